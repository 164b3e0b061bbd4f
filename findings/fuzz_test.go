package findings

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jiraconnect/jiraconnect/jira/wiki"
)

// coerce turns arbitrary fuzz strings into a finding that passes validation, so that the fuzzer
// spends its time in BuildIssue rather than in validation errors.
func coerce(title, excerpt string, refs []string) Finding {
	f := validFinding()
	title = strings.Map(func(r rune) rune {
		if badLineRune(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(title, "?"))
	if r := []rune(title); len(r) > MaxTitleLen {
		title = string(r[:MaxTitleLen])
	}
	if strings.TrimSpace(title) == "" {
		title = "t"
	}
	f.Title = title
	excerpt = strings.ReplaceAll(strings.ToValidUTF8(excerpt, "?"), "\x00", "")
	if len(excerpt) > MaxExcerptBytes {
		excerpt = strings.ToValidUTF8(excerpt[:MaxExcerptBytes], "")
	}
	f.Excerpt = excerpt
	f.FrameworkRefs = nil
	for _, r := range refs {
		if ValidFrameworkRef(r) && !strings.Contains(strings.Join(f.FrameworkRefs, " "), r) {
			f.FrameworkRefs = append(f.FrameworkRefs, r)
		}
	}
	return f
}

// checkADF verifies the JSON shape Jira accepts for the node kinds the description uses.
func checkADF(t *testing.T, raw []byte, wantHref string) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("description is not JSON: %v\n%s", err, raw)
	}
	if doc["type"] != "doc" || doc["version"] != float64(1) {
		t.Fatalf("not an ADF doc: %s", raw)
	}
	blocks := map[string]bool{"paragraph": true, "heading": true, "bulletList": true, "codeBlock": true, "rule": true}
	var node func(n any, parent string)
	node = func(n any, parent string) {
		m, ok := n.(map[string]any)
		if !ok {
			t.Fatalf("node is not an object: %v", n)
		}
		typ, _ := m["type"].(string)
		kids, _ := m["content"].([]any)
		switch typ {
		case "text":
			if s, _ := m["text"].(string); s == "" || (parent != "codeBlock" && strings.ContainsAny(s, "\n\r")) {
				t.Fatalf("bad text node %q under %s", s, parent)
			}
			marks, _ := m["marks"].([]any)
			for _, mk := range marks {
				mm := mk.(map[string]any)
				switch mm["type"] {
				case "strong", "code":
				case "link":
					if href := mm["attrs"].(map[string]any)["href"]; href != wantHref {
						t.Fatalf("link to %v", href)
					}
				default:
					t.Fatalf("unexpected mark %v", mm["type"])
				}
			}
			if parent == "codeBlock" && len(marks) > 0 {
				t.Fatal("marks in a code block")
			}
		case "hardBreak":
		case "listItem":
			if parent != "bulletList" || len(kids) == 0 {
				t.Fatalf("listItem under %s with %d children", parent, len(kids))
			}
			if first := kids[0].(map[string]any)["type"]; first != "paragraph" {
				t.Fatalf("listItem starts with %v", first)
			}
		default:
			if !blocks[typ] {
				t.Fatalf("unexpected node type %q", typ)
			}
			if parent != "doc" && parent != "listItem" {
				t.Fatalf("block %s under %s", typ, parent)
			}
		}
		for _, k := range kids {
			node(k, typ)
		}
	}
	content, ok := doc["content"].([]any)
	if !ok || len(content) == 0 {
		t.Fatalf("doc has no content: %s", raw)
	}
	for _, n := range content {
		node(n, "doc")
	}
}

func FuzzBuildIssue(f *testing.F) {
	f.Add("Prompt injection", "contact admin@example.com", "OWASP_LLM01", "EU_AI_ACT_Art15")
	f.Add(strings.Repeat("😀", 300), "password=hunter2\n"+samplePEM, "MITRE_ATLAS_AML_T0051", "bad ref")
	f.Add("[x|javascript:alert(1)] {code}", "{code}\n{noformat}\n"+sampleJWT, "", "")
	f.Add("a\nb\x00c\u202e", "\xff\xfe a@b.co\r\n\t", "OWASP_LLM01", "OWASP_LLM01")
	f.Add("jane.doe@example.org leaked", "x@y.io"+sampleGHP+"@z.dev", "X_1", "Y_2.3")
	cfg := validConfig()
	f.Fuzz(func(t *testing.T, title, excerpt, ref1, ref2 string) {
		raw := validFinding()
		raw.Title, raw.Excerpt, raw.FrameworkRefs = title, excerpt, []string{ref1, ref2}
		// Raw input: BuildIssue either rejects it as invalid or accepts a valid finding.
		if _, err := BuildIssue(testScope, raw, cfg); (err == nil) != (raw.Validate() == nil) {
			t.Fatalf("BuildIssue error %v disagrees with Validate %v", err, raw.Validate())
		}

		fd := coerce(title, excerpt, []string{ref1, ref2})
		if err := fd.Validate(); err != nil {
			t.Fatalf("coerce produced an invalid finding: %v", err)
		}
		in, err := BuildIssue(testScope, fd, cfg)
		if err != nil {
			t.Fatalf("BuildIssue rejected a valid finding: %v", err)
		}
		if n := utf16Len(in.Summary); n > SummaryMaxUTF16 || !utf8.ValidString(in.Summary) || strings.ContainsAny(in.Summary, "\r\n\t") {
			t.Fatalf("bad summary (%d units): %q", n, in.Summary)
		}
		for _, l := range in.Labels {
			if l == "" || SanitizeLabel(l) != l {
				t.Fatalf("invalid label %q", l)
			}
		}
		if in.Labels[len(in.Labels)-1] != IssueMarker(testScope, fd.ID) {
			t.Fatal("marker label missing")
		}
		rawDoc, err := json.Marshal(in.Description)
		if err != nil {
			t.Fatalf("marshal description: %v", err)
		}
		checkADF(t, rawDoc, "https://app.example.com/findings/"+fd.ID.String())
		plain := in.Description.PlainText()
		for _, text := range []string{plain, in.Summary} {
			if l := leaks(text); len(l) > 0 {
				t.Fatalf("issue text contains %v\nexcerpt %q\ntitle %q", l, excerpt, title)
			}
		}
		// The Data Center rendering must not fail either.
		if w := wiki.Render(in.Description); !utf8.ValidString(w) {
			t.Fatal("wiki rendering is not valid UTF-8")
		}
	})
}
