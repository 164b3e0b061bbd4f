package jql

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFilterAccepts(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`labels = "security"`:    `labels = "security"`,
		"  labels = security \t": `labels = security`,
		`project in (SEC, "OPS") AND (labels = a OR labels = 'b c')`:   `project in (SEC, "OPS") AND (labels = a OR labels = 'b c')`,
		`summary ~ "ORDER BY (" AND labels = ')'`:                      `summary ~ "ORDER BY (" AND labels = ')'`,
		`summary ~ "a \"quoted\" \u0041 \\ \' \ b \t"`:                 `summary ~ "a \"quoted\" \u0041 \\ \' \ b \t"`,
		`assignee in membersOf("jira-security") AND labels != ordered`: `assignee in membersOf("jira-security") AND labels != ordered`,
		`cf[10010] = "x" AND 日本 = "語"`:                                 `cf[10010] = "x" AND 日本 = "語"`,
	} {
		c := Filter(in)
		require.NoError(t, c.Err(), in)
		assert.Equal(t, want, c.String())
	}
}

func TestFilterRejects(t *testing.T) {
	t.Parallel()
	for in, problem := range map[string]string{
		"":                                       "empty",
		"   ":                                    "empty",
		"labels = security\nOR project = X":      "control character",
		"labels = \"a\x00\"":                     "control character",
		"labels = a\x7f":                         "control character",
		"labels = \xff":                          "UTF-8",
		`labels = "security`:                     "not closed",
		`labels = 'security`:                     "not closed",
		`labels = "a\q"`:                         "invalid escape",
		`labels = "a\u12"`:                       `\u escape`,
		`labels = "a\`:                           "backslash",
		`labels = a\) OR (x = y`:                 "backslash outside",
		`labels = security) OR (project = OTHER`: "never opened",
		`(labels = security`:                     "open",
		`labels = security ORDER BY created DESC`:                   "ORDER BY",
		`labels = security order by key`:                            "ORDER BY",
		strings.Repeat("(", 65) + "a = b" + strings.Repeat(")", 65): "deep",
	} {
		err := Filter(in).Err()
		require.Error(t, err, "%q", in)
		assert.Contains(t, err.Error(), problem, "%q", in)
	}
}

// A filter stays one operand of the query it is combined into: its parentheses and quotes can
// neither close the wrapper nor open something the generated clauses end up inside.
func TestFilterCombined(t *testing.T) {
	t.Parallel()
	q, err := Query{
		Where:   And(Filter(`labels = "security" OR project = SEC`), NotEq("statusCategory", "Done"), Eq("priority", "High")),
		OrderBy: []Order{Asc("created")},
	}.Build()
	require.NoError(t, err)
	assert.Equal(t, `(labels = "security" OR project = SEC) AND (statusCategory != "Done") AND (priority = "High") ORDER BY created ASC`, q)
	_, err = Query{Where: And(Filter(`a = b) OR (c = d`), Eq("priority", "High"))}.Build()
	assert.Error(t, err)
}

// closingParen returns the index of the parenthesis that closes the one at s[open], reading
// string literals the way Jira does (the backslash escapes the next byte inside one), or -1.
func closingParen(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '"', '\'':
			q := s[i]
			for i++; i < len(s) && s[i] != q; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func FuzzFilter(f *testing.F) {
	for _, s := range []string{`labels = "security"`, `a = b) OR (c = d`, `x = "a\"b" AND (y in (1, 2))`, `x = ')'`,
		`labels = a ORDER BY key`, `"\u0041" = '\''`, `a = b\`, "a = \"\t\"", `((a = b))`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := Filter(s)
		if c.Err() != nil {
			return
		}
		text := c.String()
		// Accepted text is accepted again unchanged.
		if again := Filter(text); again.Err() != nil || again.String() != text {
			t.Fatalf("Filter(%q) accepted as %q, then %v / %q", s, text, again.Err(), again.String())
		}
		for i := 0; i < len(text); i++ {
			if isFilterControl(text[i]) {
				t.Fatalf("accepted filter %q holds a control character", text)
			}
		}
		// Combined with a generated clause, the wrapper the filter sits in closes exactly after it.
		q, err := Query{Where: And(c, Eq("priority", "High")), OrderBy: []Order{Asc("created")}}.Build()
		if err != nil {
			t.Fatalf("combining accepted filter %q: %v", text, err)
		}
		if end := closingParen(q, 0); end != len(text)+1 {
			t.Fatalf("in %q the filter's wrapper closes at %d, want %d", q, end, len(text)+1)
		}
		if !strings.HasSuffix(q, `) AND (priority = "High") ORDER BY created ASC`) {
			t.Fatalf("combined query %q", q)
		}
	})
}
