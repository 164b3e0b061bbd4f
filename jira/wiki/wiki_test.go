package wiki

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jiraconnect/jiraconnect/jira/adf"
)

// unescape inverts Escape the way Jira's renderer reads it: numeric character references and
// &amp; are decoded, and a backslash before an escapable character yields that character.
func unescape(t *testing.T, s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '&':
			end := strings.IndexByte(s[i:], ';')
			if end < 0 {
				t.Fatalf("bare & in %q", s)
			}
			ent := s[i+1 : i+end]
			i += end
			if ent == "amp" {
				b.WriteByte('&')
				continue
			}
			n, err := strconv.Atoi(strings.TrimPrefix(ent, "#"))
			if err != nil || !strings.HasPrefix(ent, "#") {
				t.Fatalf("unknown entity %q in %q", ent, s)
			}
			b.WriteRune(rune(n))
		case c == '\\':
			if i+1 >= len(s) || !strings.ContainsRune("-#*_+?^~%()@", rune(s[i+1])) {
				t.Fatalf("backslash not followed by an escapable character in %q", s)
			}
			b.WriteByte(s[i+1])
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// markup matches any unescaped wiki construct an attacker could want: link/macro/table/image
// characters, a URL scheme, a block prefix, or a phrase character not preceded by a backslash.
var dangerous = regexp.MustCompile(`[\[\]{}|!\\:]|(^|[^\\])[*_\-+^~?#%()@]|(?i)(^|\s)(h[1-6]|bq)\.`)

func checkEscaped(t *testing.T, in, out string) {
	t.Helper()
	checkNoMarkup(t, out)
	if got, want := unescape(t, out), adf.Clean(in); got != want {
		t.Fatalf("Escape(%q) = %q does not round-trip: %q", in, out, got)
	}
}

// checkNoMarkup fails if out, once our own escapes are removed, still contains wiki markup.
func checkNoMarkup(t *testing.T, out string) {
	t.Helper()
	// Each escape becomes one inert placeholder rather than disappearing: removing it would glue
	// its neighbours together ("h1&#33;." is not a heading, but "h1." would be).
	stripped := regexp.MustCompile(`&(#[0-9]+|amp);|\\[-#*_+?^~%()@]`).ReplaceAllString(out, "\x01")
	if m := dangerous.FindString(stripped); m != "" {
		t.Fatalf("%q contains unescaped markup %q", out, m)
	}
}

func TestEscape(t *testing.T) {
	tests := map[string]string{
		"plain text":                          "plain text",
		"*bold* _it_ -del- +ins+ ^sup^ ~sub~": `\*bold\* \_it\_ \-del\- \+ins\+ \^sup\^ \~sub\~`,
		"[evil|https://evil.example]":         `&#91;evil&#124;https&#58;//evil.example&#93;`,
		"https://evil.example/x":              `https&#58;//evil.example/x`,
		"{code}x{code} {color:red}r{color}":   `&#123;code&#125;x&#123;code&#125; &#123;color&#58;red&#125;r&#123;color&#125;`,
		"!https://evil/img.png!":              `&#33;https&#58;//evil/img.png&#33;`,
		"[~admin] [^file.txt]":                `&#91;\~admin&#93; &#91;\^file.txt&#93;`,
		"h1. Heading":                         `h1&#46; Heading`,
		"bq. quote":                           `bq&#46; quote`,
		"see h1.x and mah1.":                  `see h1&#46;x and mah1.`,
		"|| a || b ||":                        `&#124;&#124; a &#124;&#124; b &#124;&#124;`,
		"---- -- ---":                         `\-\-\-\- \-\- \-\-\-`,
		"C:\\path\\\\x":                       `C&#58;&#92;path&#92;&#92;x`,
		"a & b &amp; &#91;":                   `a &amp; b &amp;amp; &amp;\#91;`,
		":) (y) (x) (!)":                      `&#58;\) \(y\) \(x\) \(&#33;\)`,
		"# item\n* item":                      "\\# item\n\\* item",
		"??cite?? @user 50%":                  `\?\?cite\?\? \@user 50\%`,
		"mailto:a@b.c":                        `mailto&#58;a\@b.c`,
	}
	for in, want := range tests {
		got := Escape(in)
		if got != want {
			t.Errorf("Escape(%q)\n got %q\nwant %q", in, got, want)
		}
		checkEscaped(t, in, got)
	}
}

func TestRender(t *testing.T) {
	link, err := adf.LinkText("scan [42]", "https://scanner.example.com/scans/42?a=1|2")
	if err != nil {
		t.Fatal(err)
	}
	doc := adf.NewDoc(
		adf.Heading(2, adf.Text("SQL *injection*")),
		adf.Paragraph(adf.Text("Severity: "), adf.Text(" high ", adf.Strong()), adf.HardBreak(), link, adf.Text(" "), adf.Text("x_y", adf.Code())),
		adf.BulletList(adf.Item(adf.Text("SOC2")), adf.ListItem(adf.Paragraph(adf.Text("ISO")), adf.BulletList(adf.Item(adf.Text("A.8.32"))))),
		adf.CodeBlock("go", "if a { b() }\n"),
		adf.Rule(),
	)
	want := "h2. SQL \\*injection\\*\n\n" +
		"Severity&#58;  *high* \n[scan &#91;42&#93;|https://scanner.example.com/scans/42?a=1%7C2] {{x\\_y}}\n\n" +
		"* SOC2\n* ISO\n** A.8.32\n\n" +
		"{code:go}\nif a { b() }\n{code}\n\n" +
		"----"
	if got := Render(doc); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRenderCodeBlockCannotBeClosedByContent(t *testing.T) {
	doc := adf.NewDoc(adf.CodeBlock("", "x\n{code}\n[evil|https://evil.example]\n{CODE}"))
	got := Render(doc)
	if strings.Contains(strings.ToLower(got), "{code") {
		t.Fatalf("code block terminator leaked: %q", got)
	}
	checkEscaped(t, "x\n{code}\n[evil|https://evil.example]\n{CODE}", got)
}

func TestRenderHeadingStaysOneLine(t *testing.T) {
	got := Render(adf.NewDoc(adf.Heading(1, adf.Text("a\nh1. b"))))
	if strings.Contains(got, "\n") || got != "h1. a h1&#46; b" {
		t.Errorf("got %q", got)
	}
}

func FuzzWikiEscape(f *testing.F) {
	for _, s := range []string{"[x|https://e]", "{code}", "h1. x", "\\\\", "&#91;", "*a*", ":)", "\x00\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkEscaped(t, s, Escape(s))
		// Text inside any rendered node stays escaped too (paragraph text is Escape's output
		// joined with our own markers and newlines).
		out := Render(adf.NewDoc(adf.Paragraph(adf.Text(s))))
		checkNoMarkup(t, out)
	})
}
