// Package wiki renders ADF documents (package adf) as Jira wiki markup, the rich-text format of
// Jira Data Center's REST API v2, so that one document model serves both flavors.
//
// Every character of user content that the wiki renderer could read as markup is escaped, so a
// finding title or excerpt cannot inject formatting, macros, images, mentions or links. Two
// escaping mechanisms are used:
//
//   - A backslash before the characters Jira's renderer documents as escapable
//     (- # * _ + ? ^ ~ | % { } [ ] ( ) ! @; Atlassian's BackslashEscapeRendererComponent).
//     Phrase characters (* _ - + ^ ~ ? # % ( ) @) are escaped this way.
//   - Numeric character references for characters that have no backslash escape or whose
//     meaning must not depend on the order in which the renderer's components run:
//     the backslash itself (a doubled backslash is the forced line break), & (so that user text
//     cannot smuggle its own entities), the structural characters [ ] | { } ! (links, tables,
//     macros, images), : (URL auto-linking needs "scheme:", emoticons need ":)") and the dot of a
//     word-initial h1.–h6. / bq. (block prefixes).
//
// The output is plain ASCII punctuation plus the user's text, so it is also readable in Jira's
// wiki editor.
package wiki

import (
	"net/url"
	"strings"

	"github.com/jiraconnect/jiraconnect/jira/adf"
)

// Render returns the wiki markup for doc (normalized first, exactly as it would be sent as ADF).
func Render(doc *adf.Doc) string {
	var r renderer
	r.blocks(doc.Normalize().Content)
	return strings.TrimRight(r.b.String(), "\n")
}

type renderer struct {
	b strings.Builder
}

func (r *renderer) blocks(nodes []adf.Node) {
	for i, n := range nodes {
		if i > 0 {
			r.b.WriteString("\n\n")
		}
		switch n.Type {
		case adf.TypeParagraph:
			r.b.WriteString(Inline(n.Content))
		case adf.TypeHeading:
			r.b.WriteString("h")
			r.b.WriteByte(byte('0' + n.Level))
			r.b.WriteString(". ")
			// A heading is one line: breaks inside it would end the heading and start a paragraph.
			r.b.WriteString(strings.ReplaceAll(Inline(n.Content), "\n", " "))
		case adf.TypeBulletList:
			r.list(n, 1)
		case adf.TypeCodeBlock:
			r.codeBlock(n)
		case adf.TypeRule:
			r.b.WriteString("----")
		}
	}
}

// list renders nested bullet lists with the wiki's repeated-star prefix. A list item's blocks
// after the first paragraph are joined with the forced line break, which the list syntax allows.
func (r *renderer) list(n adf.Node, level int) {
	for i, item := range n.Content {
		if i > 0 || level > 1 {
			r.b.WriteByte('\n')
		}
		r.b.WriteString(strings.Repeat("*", level))
		r.b.WriteByte(' ')
		first := true
		for _, blk := range item.Content {
			switch blk.Type {
			case adf.TypeBulletList:
				r.list(blk, level+1)
				first = false
				continue
			case adf.TypeParagraph:
				if !first {
					r.b.WriteString(" \\\\ ")
				}
				r.b.WriteString(strings.ReplaceAll(Inline(blk.Content), "\n", " \\\\ "))
			case adf.TypeCodeBlock:
				if !first {
					r.b.WriteString(" \\\\ ")
				}
				r.b.WriteString(monospaceLines(codeText(blk)))
			}
			first = false
		}
	}
}

func codeText(n adf.Node) string {
	var b strings.Builder
	for _, t := range n.Content {
		b.WriteString(t.Text)
	}
	return strings.TrimRight(b.String(), "\n")
}

// monospaceLines renders code as escaped {{monospace}} lines joined by forced line breaks, for
// places where a {code} block cannot go.
func monospaceLines(code string) string {
	var parts []string
	for _, line := range strings.Split(code, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		parts = append(parts, "{{"+Escape(line)+"}}")
	}
	return strings.Join(parts, " \\\\ ")
}

// codeBlock emits {code}. Inside it the renderer does not interpret markup, so content is written
// verbatim — unless it contains the block's own terminator, which cannot be escaped there; such
// content falls back to an escaped paragraph (same text, no highlighting).
func (r *renderer) codeBlock(n adf.Node) {
	code := codeText(n)
	if strings.Contains(strings.ToLower(code), "{code") {
		r.b.WriteString(Escape(code))
		return
	}
	r.b.WriteString("{code")
	if n.Lang != "" && adf.ValidLang(n.Lang) && !strings.ContainsAny(n.Lang, "#") {
		r.b.WriteString(":")
		r.b.WriteString(n.Lang)
	}
	r.b.WriteString("}\n")
	r.b.WriteString(code)
	r.b.WriteString("\n{code}")
}

// Inline renders inline nodes (text with marks, hard breaks).
func Inline(nodes []adf.Node) string {
	var b strings.Builder
	for _, n := range nodes {
		switch n.Type {
		case adf.TypeHardBreak:
			b.WriteByte('\n')
		case adf.TypeText:
			b.WriteString(text(n))
		}
	}
	return b.String()
}

// text renders one text node. Leading and trailing spaces are moved outside the markers because
// the wiki only recognises *bold* and {{code}} when the markers touch non-space characters.
func text(n adf.Node) string {
	core := strings.TrimSpace(n.Text)
	if core == "" {
		return Escape(n.Text)
	}
	lead := n.Text[:strings.Index(n.Text, core)]
	trail := n.Text[len(lead)+len(core):]
	var strong, code bool
	var href string
	for _, m := range n.Marks {
		switch m.Type {
		case adf.MarkStrong:
			strong = true
		case adf.MarkCode:
			code = true
		case adf.MarkLink:
			if adf.ValidateHref(m.Href) == nil {
				href = m.Href
			}
		}
	}
	s := Escape(core)
	switch {
	case code:
		s = "{{" + s + "}}"
	case strong:
		s = "*" + s + "*"
	}
	if href != "" {
		s = "[" + s + "|" + linkTarget(href) + "]"
	}
	return Escape(lead) + s + Escape(trail)
}

// linkTarget percent-encodes the characters that would end or split a [text|url] link. The URL has
// already been validated as absolute http(s) by package adf.
func linkTarget(href string) string {
	var b strings.Builder
	for _, r := range href {
		if strings.ContainsRune("|[]{}!\\^~\"<>` ", r) {
			b.WriteString(url.QueryEscape(string(r)))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Escape escapes user text for use anywhere inline in wiki markup. Newlines are kept (they are
// line breaks); callers that need one line replace them.
func Escape(s string) string {
	s = adf.Clean(s)
	var b strings.Builder
	b.Grow(len(s) + len(s)/4)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			b.WriteString("&#92;")
		case '&':
			b.WriteString("&amp;")
		case '[':
			b.WriteString("&#91;")
		case ']':
			b.WriteString("&#93;")
		case '|':
			b.WriteString("&#124;")
		case '{':
			b.WriteString("&#123;")
		case '}':
			b.WriteString("&#125;")
		case '!':
			b.WriteString("&#33;")
		case ':':
			b.WriteString("&#58;")
		case '*', '_', '-', '+', '^', '~', '?', '#', '%', '(', ')', '@':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '.':
			if blockPrefixBefore(s, i) {
				b.WriteString("&#46;")
			} else {
				b.WriteByte('.')
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// blockPrefixBefore reports whether s[:i] ends with a word-initial h1–h6 or bq, so that a dot at i
// would complete a block prefix (h1. heading, bq. quote) if it started a line.
func blockPrefixBefore(s string, i int) bool {
	if i < 2 {
		return false
	}
	w := strings.ToLower(s[i-2 : i])
	if !(w[0] == 'h' && w[1] >= '1' && w[1] <= '6') && w != "bq" {
		return false
	}
	if i == 2 {
		return true
	}
	p := s[i-3]
	return !(p >= 'a' && p <= 'z' || p >= 'A' && p <= 'Z' || p >= '0' && p <= '9' || p == '_')
}
