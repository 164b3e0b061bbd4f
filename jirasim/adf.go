package jirasim

import (
	"encoding/json"
	"strings"
)

// Atlassian Document Format helpers. The simulator validates only what Jira rejects loudly —
// the value must be a JSON object {"type":"doc","version":1,"content":[...]} whose nodes carry a
// type — and flattens documents to text for search and for v2 representations.

type adfNode struct {
	Type    string          `json:"type"`
	Version int             `json:"version,omitempty"`
	Text    string          `json:"text,omitempty"`
	Content []adfNode       `json:"content,omitempty"`
	Attrs   json.RawMessage `json:"attrs,omitempty"`
	Marks   json.RawMessage `json:"marks,omitempty"`
}

// parseADF reports whether raw is a well-formed ADF document and returns it.
func parseADF(raw json.RawMessage) (*adfNode, bool) {
	t := strings.TrimSpace(string(raw))
	if !strings.HasPrefix(t, "{") {
		return nil, false
	}
	var doc adfNode
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, false
	}
	if doc.Type != "doc" || doc.Version != 1 {
		return nil, false
	}
	var ok func(n *adfNode, depth int) bool
	ok = func(n *adfNode, depth int) bool {
		if depth > 64 {
			return false
		}
		for i := range n.Content {
			c := &n.Content[i]
			if c.Type == "" || c.Type == "doc" {
				return false
			}
			if !ok(c, depth+1) {
				return false
			}
		}
		return true
	}
	if !ok(&doc, 0) {
		return nil, false
	}
	return &doc, true
}

// adfText flattens a document: text nodes concatenated, block nodes separated by newlines.
func adfText(doc *adfNode) string {
	var b strings.Builder
	var walk func(n *adfNode)
	walk = func(n *adfNode) {
		switch n.Type {
		case "text":
			b.WriteString(n.Text)
			return
		case "hardBreak":
			b.WriteByte('\n')
			return
		}
		for i := range n.Content {
			walk(&n.Content[i])
		}
		switch n.Type {
		case "paragraph", "heading", "codeBlock", "listItem", "blockquote", "rule":
			b.WriteByte('\n')
		}
	}
	walk(doc)
	return strings.TrimRight(b.String(), "\n")
}

// textToADF wraps plain text in a document, one paragraph per line, the way Cloud renders a
// v2-written (string) description through v3.
func textToADF(s string) json.RawMessage {
	doc := adfNode{Type: "doc", Version: 1, Content: []adfNode{}}
	if s != "" {
		for _, line := range strings.Split(s, "\n") {
			p := adfNode{Type: "paragraph"}
			if line != "" {
				p.Content = []adfNode{{Type: "text", Text: line}}
			}
			doc.Content = append(doc.Content, p)
		}
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return json.RawMessage(`{"type":"doc","version":1,"content":[]}`)
	}
	return raw
}

func descriptionText(ext *issueExt) string {
	if ext.descText != "" {
		return ext.descText
	}
	if ext.descADF != nil {
		if doc, ok := parseADF(ext.descADF); ok {
			return adfText(doc)
		}
	}
	return ""
}

func (v cfValue) plainText() string {
	if v.text != "" {
		return v.text
	}
	if v.adf != nil {
		if doc, ok := parseADF(v.adf); ok {
			return adfText(doc)
		}
	}
	return ""
}
