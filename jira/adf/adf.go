// Package adf builds Atlassian Document Format documents — the rich-text format of Jira Cloud's
// REST API v3 (description, textarea custom fields, comments) — as Go data structures.
//
// User content never passes through a template or string concatenation: it is placed in text
// nodes, and json.Marshal does the escaping. Marshalling normalizes the tree so that Jira accepts
// it whatever the input strings were: empty text nodes (which Jira rejects) are dropped, control
// characters are removed, newlines in inline content become hardBreak nodes, marks are reduced
// to combinations ADF allows, and empty lists are dropped.
//
// Only the node types the connector needs are modelled: doc, paragraph, heading, text (marks
// strong, code, link), bulletList, listItem, codeBlock, rule and hardBreak.
package adf

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Node type names.
const (
	TypeDoc        = "doc"
	TypeParagraph  = "paragraph"
	TypeHeading    = "heading"
	TypeText       = "text"
	TypeBulletList = "bulletList"
	TypeListItem   = "listItem"
	TypeCodeBlock  = "codeBlock"
	TypeRule       = "rule"
	TypeHardBreak  = "hardBreak"
)

// Mark type names.
const (
	MarkStrong = "strong"
	MarkCode   = "code"
	MarkLink   = "link"
)

// Doc is an ADF document. Build it with NewDoc; the zero Doc marshals as an empty document.
type Doc struct {
	Content []Node
}

// Node is a block or inline node. Construct nodes with the functions of this package; the fields
// are exported so that renderers (package wiki) and tests can walk the tree.
type Node struct {
	Type    string
	Text    string // text nodes
	Level   int    // headings, 1–6
	Lang    string // code blocks, optional
	Marks   []Mark // text nodes
	Content []Node
}

// Mark decorates a text node.
type Mark struct {
	Type string
	Href string // link marks
}

// NewDoc returns a document with the given block nodes.
func NewDoc(blocks ...Node) *Doc { return &Doc{Content: blocks} }

// Paragraph returns a paragraph of inline nodes (text, hardBreak).
func Paragraph(inlines ...Node) Node { return Node{Type: TypeParagraph, Content: inlines} }

// Heading returns a heading; level is clamped to 1–6.
func Heading(level int, inlines ...Node) Node {
	return Node{Type: TypeHeading, Level: min(max(level, 1), 6), Content: inlines}
}

// Text returns a text node with optional marks.
func Text(s string, marks ...Mark) Node { return Node{Type: TypeText, Text: s, Marks: marks} }

// Strong returns the bold mark.
func Strong() Mark { return Mark{Type: MarkStrong} }

// Code returns the inline-code mark.
func Code() Mark { return Mark{Type: MarkCode} }

// Link returns a link mark. Only absolute http and https URLs are accepted: a javascript: or
// data: URL in an issue would be a stored XSS in every client that renders it.
func Link(href string) (Mark, error) {
	if err := ValidateHref(href); err != nil {
		return Mark{}, err
	}
	return Mark{Type: MarkLink, Href: href}, nil
}

// ValidateHref reports whether href is an acceptable link target.
func ValidateHref(href string) error {
	if href == "" {
		return errors.New("adf: empty link")
	}
	if len(href) > 2048 {
		return errors.New("adf: link longer than 2048 bytes")
	}
	if !utf8.ValidString(href) {
		return errors.New("adf: link is not valid UTF-8")
	}
	for _, r := range href {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return errors.New("adf: link contains whitespace or control characters")
		}
	}
	u, err := url.Parse(href)
	if err != nil {
		return fmt.Errorf("adf: invalid link: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("adf: link scheme must be http or https")
	}
	if u.Host == "" || u.Opaque != "" {
		return errors.New("adf: link must be an absolute URL with a host")
	}
	if u.User != nil {
		return errors.New("adf: link must not contain user info")
	}
	return nil
}

// LinkText returns a text node linking to href, or an error for an unacceptable href.
func LinkText(text, href string) (Node, error) {
	m, err := Link(href)
	if err != nil {
		return Node{}, err
	}
	if text == "" {
		text = href
	}
	return Text(text, m), nil
}

// BulletList returns a bullet list of listItem nodes.
func BulletList(items ...Node) Node { return Node{Type: TypeBulletList, Content: items} }

// ListItem returns a list item holding block nodes (usually one paragraph).
func ListItem(blocks ...Node) Node { return Node{Type: TypeListItem, Content: blocks} }

// Item is shorthand for a list item with one paragraph of inline nodes.
func Item(inlines ...Node) Node { return ListItem(Paragraph(inlines...)) }

// CodeBlock returns a code block; lang is optional and kept only when it is a plain identifier.
func CodeBlock(lang, code string) Node {
	return Node{Type: TypeCodeBlock, Lang: lang, Content: []Node{Text(code)}}
}

// Rule returns a horizontal rule.
func Rule() Node { return Node{Type: TypeRule} }

// HardBreak returns a line break inside a paragraph or heading.
func HardBreak() Node { return Node{Type: TypeHardBreak} }

// ValidLang reports whether lang can be used as a code block language.
func ValidLang(lang string) bool {
	if lang == "" || len(lang) > 32 {
		return false
	}
	for _, r := range lang {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("+#_-.", r)) {
			return false
		}
	}
	return true
}

// Clean removes characters Jira cannot store or display from user text: invalid UTF-8 becomes
// U+FFFD, and control characters are removed except tab and newline (CR and CRLF become LF).
func Clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case r == '\r':
			return '\n'
		case unicode.IsControl(r), r == '\u2028', r == '\u2029', r == '\uFEFF':
			return -1
		}
		return r
	}, s)
}

// Normalize returns the document as it will be marshalled: see the package comment.
func (d *Doc) Normalize() *Doc {
	out := &Doc{}
	if d == nil {
		return out
	}
	out.Content = normalizeBlocks(d.Content)
	return out
}

func normalizeBlocks(in []Node) []Node {
	var out []Node
	for _, n := range in {
		switch n.Type {
		case TypeParagraph:
			out = append(out, Node{Type: TypeParagraph, Content: normalizeInlines(n.Content)})
		case TypeHeading:
			out = append(out, Node{Type: TypeHeading, Level: min(max(n.Level, 1), 6), Content: normalizeInlines(n.Content)})
		case TypeBulletList:
			var items []Node
			for _, it := range n.Content {
				if it.Type != TypeListItem {
					// A bare block inside a list is wrapped rather than dropped.
					it = ListItem(it)
				}
				blocks := listItemBlocks(normalizeBlocks(it.Content))
				if len(blocks) == 0 {
					continue
				}
				items = append(items, Node{Type: TypeListItem, Content: blocks})
			}
			if len(items) > 0 {
				out = append(out, Node{Type: TypeBulletList, Content: items})
			}
		case TypeCodeBlock:
			var b strings.Builder
			for _, t := range n.Content {
				b.WriteString(t.Text)
			}
			cb := Node{Type: TypeCodeBlock}
			if ValidLang(n.Lang) {
				cb.Lang = n.Lang
			}
			if code := Clean(b.String()); code != "" {
				cb.Content = []Node{{Type: TypeText, Text: code}}
			}
			out = append(out, cb)
		case TypeRule:
			out = append(out, Node{Type: TypeRule})
		case TypeText, TypeHardBreak:
			// Inline content at block level is wrapped in a paragraph.
			out = append(out, Node{Type: TypeParagraph, Content: normalizeInlines([]Node{n})})
		case TypeListItem:
			out = append(out, normalizeBlocks([]Node{BulletList(n)})...)
		}
		// Unknown types are dropped: the document only ever contains what this package models.
	}
	return out
}

// listItemBlocks restricts normalized blocks to what ADF allows in a list item — paragraphs,
// nested bullet lists and code blocks, starting with a paragraph or code block. Headings become
// paragraphs; rules are dropped.
func listItemBlocks(blocks []Node) []Node {
	var out []Node
	for _, b := range blocks {
		switch b.Type {
		case TypeParagraph, TypeBulletList, TypeCodeBlock:
			out = append(out, b)
		case TypeHeading:
			out = append(out, Node{Type: TypeParagraph, Content: b.Content})
		}
	}
	if len(out) > 0 && out[0].Type == TypeBulletList {
		out = append([]Node{{Type: TypeParagraph}}, out...)
	}
	return out
}

func normalizeInlines(in []Node) []Node {
	var out []Node
	for _, n := range in {
		switch n.Type {
		case TypeHardBreak:
			out = append(out, Node{Type: TypeHardBreak})
		case TypeText:
			marks := normalizeMarks(n.Marks)
			for i, line := range strings.Split(Clean(n.Text), "\n") {
				if i > 0 {
					out = append(out, Node{Type: TypeHardBreak})
				}
				if line != "" {
					out = append(out, Node{Type: TypeText, Text: line, Marks: marks})
				}
			}
		}
	}
	return out
}

// normalizeMarks keeps at most one mark of each type and enforces ADF's rule that code combines
// only with link. Invalid links are dropped (the text stays).
func normalizeMarks(in []Mark) []Mark {
	var strong, code bool
	var link string
	for _, m := range in {
		switch m.Type {
		case MarkStrong:
			strong = true
		case MarkCode:
			code = true
		case MarkLink:
			if link == "" && ValidateHref(m.Href) == nil {
				link = m.Href
			}
		}
	}
	var out []Mark
	if code {
		out = append(out, Mark{Type: MarkCode})
	} else if strong {
		out = append(out, Mark{Type: MarkStrong})
	}
	if link != "" {
		out = append(out, Mark{Type: MarkLink, Href: link})
	}
	return out
}

// JSON shapes.

type jsonDoc struct {
	Type    string     `json:"type"`
	Version int        `json:"version"`
	Content []jsonNode `json:"content"`
}

type jsonNode struct {
	Type    string         `json:"type"`
	Attrs   map[string]any `json:"attrs,omitempty"`
	Text    string         `json:"text,omitempty"`
	Marks   []jsonMark     `json:"marks,omitempty"`
	Content []jsonNode     `json:"content,omitempty"`
}

type jsonMark struct {
	Type  string            `json:"type"`
	Attrs map[string]string `json:"attrs,omitempty"`
}

// MarshalJSON writes the normalized document as {"type":"doc","version":1,"content":[…]}.
func (d *Doc) MarshalJSON() ([]byte, error) {
	n := d.Normalize()
	return json.Marshal(jsonDoc{Type: TypeDoc, Version: 1, Content: toJSON(n.Content)})
}

func toJSON(nodes []Node) []jsonNode {
	out := make([]jsonNode, 0, len(nodes))
	for _, n := range nodes {
		j := jsonNode{Type: n.Type, Text: n.Text}
		switch n.Type {
		case TypeHeading:
			j.Attrs = map[string]any{"level": n.Level}
		case TypeCodeBlock:
			if n.Lang != "" {
				j.Attrs = map[string]any{"language": n.Lang}
			}
		}
		for _, m := range n.Marks {
			jm := jsonMark{Type: m.Type}
			if m.Type == MarkLink {
				jm.Attrs = map[string]string{"href": m.Href}
			}
			j.Marks = append(j.Marks, jm)
		}
		if len(n.Content) > 0 {
			j.Content = toJSON(n.Content)
		}
		out = append(out, j)
	}
	return out
}

// PlainText renders the document's text content without markup, one block per line. It is used
// for logs, previews and tests.
func (d *Doc) PlainText() string {
	var b strings.Builder
	var walk func(nodes []Node)
	walk = func(nodes []Node) {
		for _, n := range nodes {
			switch n.Type {
			case TypeText:
				b.WriteString(n.Text)
			case TypeHardBreak:
				b.WriteByte('\n')
			default:
				walk(n.Content)
				if n.Type != TypeListItem && n.Type != TypeBulletList {
					b.WriteByte('\n')
				}
			}
		}
	}
	walk(d.Normalize().Content)
	return strings.TrimRight(b.String(), "\n")
}
