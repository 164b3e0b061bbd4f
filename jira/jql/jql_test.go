package jql

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	tests := map[string]string{
		"SEC":                 `"SEC"`,
		`a"b`:                 `"a\"b"`,
		`a\b`:                 `"a\\b"`,
		`it's`:                `"it's"`,
		"a\nb\tc\rd":          `"a\nb\tc\rd"`,
		"\x00\x1f\x7f\u0085":  `"\u0000\u001f\u007f\u0085"`,
		"x\u2028y":            `"x\u2028y"`,
		"bad\xffutf8":         "\"bad\uFFFDutf8\"",
		`" OR project = "X`:   `"\" OR project = \"X"`,
		`\" OR 1=1 OR a = \"`: `"\\\" OR 1=1 OR a = \\\""`,
		"":                    `""`,
		"日本語":                 `"日本語"`,
	}
	for in, want := range tests {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestUnquote(t *testing.T) {
	bad := []string{``, `"`, `"abc`, `"a"b"`, `"a\q"`, `"\u12"`, `"\uzzzz"`, "\"a\nb\"", `abc`, `"a\`}
	for _, s := range bad {
		if v, err := Unquote(s); err == nil {
			t.Errorf("Unquote(%q) = %q, want error", s, v)
		}
	}
	if v, err := Unquote(`"a\'b\ c"`); err != nil || v != "a'b c" {
		t.Errorf("Unquote = %q, %v", v, err)
	}
}

func TestBuild(t *testing.T) {
	q := Query{
		Where: And(
			In("project", "SEC", "APPSEC"),
			In("issuetype", "Bug", "Vulnerability"),
			Eq("labels", "security"),
			Eq("statusCategory", "Done"),
			IsNotEmpty("resolution"),
			GreaterEq("resolved", DaysAgo(30)),
		),
		OrderBy: []Order{Desc("resolved"), Asc("key")},
	}
	got, err := q.Build()
	if err != nil {
		t.Fatal(err)
	}
	want := `(project in ("SEC", "APPSEC")) AND (issuetype in ("Bug", "Vulnerability")) AND (labels = "security") AND (statusCategory = "Done") AND (resolution is not EMPTY) AND (resolved >= -30d) ORDER BY resolved DESC, key ASC`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if q.String() != want {
		t.Error("String differs from Build")
	}
}

func TestBuilders(t *testing.T) {
	tests := []struct {
		c    Clause
		want string
	}{
		{NotEq("status", "Done"), `status != "Done"`},
		{NotIn("project", "A"), `project not in ("A")`},
		{IsEmpty("resolution"), `resolution is EMPTY`},
		{IDEquals(10042), `id = 10042`},
		{Eq("cf[10010]", "x"), `cf[10010] = "x"`},
		{Eq("customfield_10010", "x"), `customfield_10010 = "x"`},
		{Or(Eq("a", "1"), Not(Eq("b", "2"))), `(a = "1") OR (NOT (b = "2"))`},
		{And(Eq("a", "1")), `a = "1"`},
		{Less("created", Relative(-2, 'w')), `created < -2w`},
		{Greater("updated", Relative(4, 'h')), `updated > 4h`},
		{LessEq("created", Date(time.Date(2024, 1, 2, 3, 4, 0, 0, time.UTC))), `created <= "2024/01/02 03:04"`},
		{GreaterEq("votes", Number(3)), `votes >= 3`},
		{GreaterEq("summary", String(`a"b`)), `summary >= "a\"b"`},
	}
	for _, tt := range tests {
		if err := tt.c.Err(); err != nil {
			t.Errorf("%s: %v", tt.want, err)
		}
		if got := tt.c.String(); got != tt.want {
			t.Errorf("got %s, want %s", got, tt.want)
		}
	}
}

func TestInvalid(t *testing.T) {
	tests := []Query{
		{},
		{Where: Eq("project = SEC OR x", "y")},
		{Where: Eq("", "y")},
		{Where: Eq("order", "y")},
		{Where: Eq("1abc", "y")},
		{Where: Eq("cf[]", "y")},
		{Where: Eq("cf[1a]", "y")},
		{Where: Eq("a b", "y")},
		{Where: Eq(`a"`, "y")},
		{Where: In("project")},
		{Where: And()},
		{Where: And(Eq("a", "1"), Eq("b c", "2"))},
		{Where: Not(Clause{})},
		{Where: GreaterEq("resolved", DaysAgo(-1))},
		{Where: GreaterEq("resolved", Relative(1, 'y'))},
		{Where: GreaterEq("resolved", Value{})},
		{Where: Eq("a", "1"), OrderBy: []Order{Desc("x; drop")}},
		{Where: Eq("a", "1"), OrderBy: make([]Order, 8)},
	}
	for i, q := range tests {
		if s, err := q.Build(); err == nil {
			t.Errorf("case %d built %q", i, s)
		}
		if !strings.HasPrefix(q.String(), "<invalid") {
			t.Errorf("case %d String = %q", i, q.String())
		}
	}
}

// scanLiteral is a JQL lexer's view of a quoted string: it returns the index just past the first
// unescaped closing quote, or -1 if the literal never closes.
func scanLiteral(s string) int {
	if s == "" || s[0] != '"' {
		return -1
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "SEC", `"`, `\`, `\"`, `" OR 1=1 OR x = "`, "a\nb", "\x00", "\xff", "\\u0022", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lit := Quote(s)
		// The literal closes exactly at its last byte: nothing the value contains can end it
		// early and let the rest be read as JQL.
		if end := scanLiteral(lit); end != len(lit) {
			t.Fatalf("Quote(%q) = %s ends at %d of %d", s, lit, end, len(lit))
		}
		for _, r := range lit {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("Quote(%q) contains raw control %U", s, r)
			}
		}
		got, err := Unquote(lit)
		if err != nil {
			t.Fatalf("Unquote(Quote(%q)) = %v", s, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); got != want {
			t.Fatalf("round trip %q -> %s -> %q", s, lit, got)
		}
		// As a clause value it stays one clause.
		c := Eq("summary", s)
		if !strings.HasPrefix(c.String(), "summary = ") || scanLiteral(strings.TrimPrefix(c.String(), "summary = ")) != len(lit) {
			t.Fatalf("clause %s", c)
		}
		if !utf8.ValidString(lit) {
			t.Fatal("invalid UTF-8 literal")
		}
	})
}
