package adf

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// validate checks marshalled ADF against the structural rules Jira enforces for the node types
// this package emits. It is deliberately independent of the normalizer: it walks the generic JSON.
func validate(data []byte) error {
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if doc["type"] != "doc" {
		return fmt.Errorf("root type %v", doc["type"])
	}
	if v, ok := doc["version"].(float64); !ok || v != 1 {
		return fmt.Errorf("version %v", doc["version"])
	}
	content, ok := doc["content"].([]any)
	if !ok {
		return fmt.Errorf("doc content is %T", doc["content"])
	}
	allowed := map[string]bool{TypeParagraph: true, TypeHeading: true, TypeBulletList: true, TypeCodeBlock: true, TypeRule: true}
	return validateNodes(content, allowed, "doc")
}

func validateNodes(nodes []any, allowed map[string]bool, parent string) error {
	inline := map[string]bool{TypeText: true, TypeHardBreak: true}
	listItemChildren := map[string]bool{TypeParagraph: true, TypeBulletList: true, TypeCodeBlock: true}
	for i, raw := range nodes {
		n, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf("%s child %d is %T", parent, i, raw)
		}
		typ, _ := n["type"].(string)
		if !allowed[typ] {
			return fmt.Errorf("%s may not contain %q", parent, typ)
		}
		kids, _ := n["content"].([]any)
		if _, has := n["content"]; has && kids == nil {
			return fmt.Errorf("%s content is not an array", typ)
		}
		switch typ {
		case TypeText:
			s, _ := n["text"].(string)
			if s == "" {
				return fmt.Errorf("empty text node in %s", parent)
			}
			if !utf8.ValidString(s) {
				return fmt.Errorf("invalid UTF-8 in text")
			}
			for _, r := range s {
				if r < 0x20 && (parent != TypeCodeBlock || (r != '\n' && r != '\t')) && r != '\t' {
					return fmt.Errorf("control character %U in %s text", r, parent)
				}
			}
			if err := validateMarks(n["marks"], parent); err != nil {
				return err
			}
		case TypeParagraph, TypeHeading:
			if typ == TypeHeading {
				attrs, _ := n["attrs"].(map[string]any)
				lvl, _ := attrs["level"].(float64)
				if lvl < 1 || lvl > 6 {
					return fmt.Errorf("heading level %v", attrs["level"])
				}
			}
			if err := validateNodes(kids, inline, typ); err != nil {
				return err
			}
		case TypeBulletList:
			if len(kids) == 0 {
				return fmt.Errorf("empty bulletList")
			}
			if err := validateNodes(kids, map[string]bool{TypeListItem: true}, typ); err != nil {
				return err
			}
		case TypeListItem:
			if len(kids) == 0 {
				return fmt.Errorf("empty listItem")
			}
			if first := kids[0].(map[string]any)["type"]; first != TypeParagraph && first != TypeCodeBlock {
				return fmt.Errorf("listItem starts with %v", first)
			}
			if err := validateNodes(kids, listItemChildren, typ); err != nil {
				return err
			}
		case TypeCodeBlock:
			if err := validateNodes(kids, map[string]bool{TypeText: true}, typ); err != nil {
				return err
			}
			for _, k := range kids {
				if _, has := k.(map[string]any)["marks"]; has {
					return fmt.Errorf("marks inside codeBlock")
				}
			}
		case TypeRule, TypeHardBreak:
			if kids != nil {
				return fmt.Errorf("%s has content", typ)
			}
		}
	}
	return nil
}

func validateMarks(raw any, parent string) error {
	if raw == nil {
		return nil
	}
	marks, ok := raw.([]any)
	if !ok || len(marks) == 0 {
		return fmt.Errorf("marks is %T", raw)
	}
	seen := map[string]bool{}
	for _, m := range marks {
		mm, _ := m.(map[string]any)
		typ, _ := mm["type"].(string)
		if seen[typ] {
			return fmt.Errorf("duplicate mark %s", typ)
		}
		seen[typ] = true
		switch typ {
		case MarkStrong, MarkCode:
		case MarkLink:
			attrs, _ := mm["attrs"].(map[string]any)
			href, _ := attrs["href"].(string)
			if err := ValidateHref(href); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown mark %q", typ)
		}
	}
	if seen[MarkCode] && seen[MarkStrong] {
		return fmt.Errorf("code combined with strong")
	}
	return nil
}

func TestMarshalShape(t *testing.T) {
	link, err := LinkText("the scan", "https://scanner.example.com/scans/42?x=1")
	if err != nil {
		t.Fatal(err)
	}
	doc := NewDoc(
		Heading(2, Text("SQL injection")),
		Paragraph(Text("Severity: "), Text("high", Strong()), HardBreak(), link),
		BulletList(Item(Text("SOC2 CC8.1")), Item(Text("ISO 27001 A.8.32", Code()))),
		CodeBlock("go", "db.Query(\"SELECT \" + input)"),
		Rule(),
	)
	got, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"doc","version":1,"content":[` +
		`{"type":"heading","attrs":{"level":2},"content":[{"type":"text","text":"SQL injection"}]},` +
		`{"type":"paragraph","content":[{"type":"text","text":"Severity: "},{"type":"text","text":"high","marks":[{"type":"strong"}]},{"type":"hardBreak"},{"type":"text","text":"the scan","marks":[{"type":"link","attrs":{"href":"https://scanner.example.com/scans/42?x=1"}}]}]},` +
		`{"type":"bulletList","content":[{"type":"listItem","content":[{"type":"paragraph","content":[{"type":"text","text":"SOC2 CC8.1"}]}]},{"type":"listItem","content":[{"type":"paragraph","content":[{"type":"text","text":"ISO 27001 A.8.32","marks":[{"type":"code"}]}]}]}]},` +
		`{"type":"codeBlock","attrs":{"language":"go"},"content":[{"type":"text","text":"db.Query(\"SELECT \" + input)"}]},` +
		`{"type":"rule"}]}`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if err := validate(got); err != nil {
		t.Error(err)
	}
}

// The example document of Atlassian's ADF documentation / the Jira create-issue example
// (JIRA-NOTES.md §4.1) must come out byte-for-byte.
func TestMatchesDocumentedExample(t *testing.T) {
	got, _ := json.Marshal(NewDoc(Paragraph(Text("Order entry fails when selecting supplier."))))
	want := `{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"Order entry fails when selecting supplier."}]}]}`
	if string(got) != want {
		t.Errorf("got %s", got)
	}
}

func TestNormalization(t *testing.T) {
	tests := []struct {
		name string
		doc  *Doc
		want string
	}{
		{"empty doc", NewDoc(), `{"type":"doc","version":1,"content":[]}`},
		{"empty text dropped", NewDoc(Paragraph(Text(""), Text("a"))), `{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"a"}]}]}`},
		{"only empty text", NewDoc(Paragraph(Text(""))), `{"type":"doc","version":1,"content":[{"type":"paragraph"}]}`},
		{"newline becomes hardBreak", NewDoc(Paragraph(Text("a\r\nb\n"))), `{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"a"},{"type":"hardBreak"},{"type":"text","text":"b"},{"type":"hardBreak"}]}]}`},
		{"control chars removed", NewDoc(Paragraph(Text("a\x00\x1b[31mb\u2028"))), `{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"a[31mb"}]}]}`},
		{"control only text dropped", NewDoc(Paragraph(Text("\x00\x07"))), `{"type":"doc","version":1,"content":[{"type":"paragraph"}]}`},
		{"invalid utf8 replaced", NewDoc(Paragraph(Text("a\xffb"))), `{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"a` + "\uFFFD" + `b"}]}]}`},
		{"code drops strong", NewDoc(Paragraph(Text("x", Strong(), Code()))), `{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"x","marks":[{"type":"code"}]}]}]}`},
		{"duplicate marks", NewDoc(Paragraph(Text("x", Strong(), Strong()))), `{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"x","marks":[{"type":"strong"}]}]}]}`},
		{"invalid link mark dropped", NewDoc(Paragraph(Text("x", Mark{Type: MarkLink, Href: "javascript:alert(1)"}))), `{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"x"}]}]}`},
		{"empty list dropped", NewDoc(BulletList(), BulletList(ListItem())), `{"type":"doc","version":1,"content":[]}`},
		{"heading level clamped", NewDoc(Heading(9, Text("h"))), `{"type":"doc","version":1,"content":[{"type":"heading","attrs":{"level":6},"content":[{"type":"text","text":"h"}]}]}`},
		{"bad code language dropped", NewDoc(CodeBlock("go\"}", "x")), `{"type":"doc","version":1,"content":[{"type":"codeBlock","content":[{"type":"text","text":"x"}]}]}`},
		{"empty code block", NewDoc(CodeBlock("", "")), `{"type":"doc","version":1,"content":[{"type":"codeBlock"}]}`},
		{"inline at block level wrapped", NewDoc(Text("loose")), `{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"loose"}]}]}`},
		{"unknown node dropped", NewDoc(Node{Type: "mention"}, Paragraph(Node{Type: "emoji"}, Text("t"))), `{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"t"}]}]}`},
		{"list item with heading and rule", NewDoc(BulletList(ListItem(Heading(1, Text("h")), Rule()))), `{"type":"doc","version":1,"content":[{"type":"bulletList","content":[{"type":"listItem","content":[{"type":"paragraph","content":[{"type":"text","text":"h"}]}]}]}]}`},
		{"nested list gets leading paragraph", NewDoc(BulletList(ListItem(BulletList(Item(Text("n")))))), `{"type":"doc","version":1,"content":[{"type":"bulletList","content":[{"type":"listItem","content":[{"type":"paragraph"},{"type":"bulletList","content":[{"type":"listItem","content":[{"type":"paragraph","content":[{"type":"text","text":"n"}]}]}]}]}]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.doc)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if err := validate(got); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNilDoc(t *testing.T) {
	var d *Doc
	got, err := d.MarshalJSON()
	if err != nil || string(got) != `{"type":"doc","version":1,"content":[]}` {
		t.Errorf("nil doc = %s, %v", got, err)
	}
}

func TestLinkValidation(t *testing.T) {
	good := []string{"https://example.com", "http://example.com/a?b=c#d", "https://[::1]:8443/x"}
	bad := []string{"", "javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x", "//example.com", "/relative",
		"https://", "https://user:pw@example.com", "https://exa mple.com", "https://example.com/\n", "ftp://example.com",
		"mailto:a@example.com", "https:example.com", strings.Repeat("a", 3000)}
	for _, h := range good {
		if _, err := Link(h); err != nil {
			t.Errorf("Link(%q) = %v", h, err)
		}
	}
	for _, h := range bad {
		if _, err := Link(h); err == nil {
			t.Errorf("Link(%q) accepted", h)
		}
	}
}

func TestPlainText(t *testing.T) {
	d := NewDoc(Heading(1, Text("T")), Paragraph(Text("a\nb")), BulletList(Item(Text("i1")), Item(Text("i2"))), CodeBlock("", "c"))
	if got, want := d.PlainText(), "T\na\nb\ni1\ni2\nc"; got != want {
		t.Errorf("PlainText = %q, want %q", got, want)
	}
}

func FuzzADF(f *testing.F) {
	f.Add("Finding", "body\nline2", "https://example.com/x", "go", "code\x00", 2)
	f.Add("", "", "", "", "", 0)
	f.Add("\x00\r\n", "\u2028\xff", "javascript:alert(1)", "\"}", "{code}", 9)
	f.Fuzz(func(t *testing.T, title, body, href, lang, code string, level int) {
		inlines := []Node{Text(body), Text(title, Strong()), HardBreak(), Text(code, Code())}
		if l, err := Link(href); err == nil {
			inlines = append(inlines, Text(title, l, Strong()))
		} else {
			// Even a hand-built invalid link mark must not survive marshalling.
			inlines = append(inlines, Text(title, Mark{Type: MarkLink, Href: href}))
		}
		doc := NewDoc(
			Heading(level, Text(title)),
			Paragraph(inlines...),
			BulletList(Item(Text(body)), ListItem(CodeBlock(lang, code)), Item()),
			CodeBlock(lang, code),
			Rule(),
			Text(body),
		)
		data, err := json.Marshal(doc)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if err := validate(data); err != nil {
			t.Fatalf("invalid ADF: %v\n%s", err, data)
		}
		// Marshalling is deterministic and the normalized tree is a fixed point.
		again, _ := json.Marshal(doc.Normalize())
		if string(again) != string(data) {
			t.Fatalf("normalize is not idempotent:\n%s\n%s", data, again)
		}
	})
}
