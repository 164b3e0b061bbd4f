package jirasim

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jiraconnect/jiraconnect/jira/jql"
)

// showNode renders a parsed JQL tree without source positions, so that the same expression
// parsed at another offset renders the same.
func showNode(n jqlNode) string {
	switch n := n.(type) {
	case andNode:
		parts := make([]string, len(n.kids))
		for i, k := range n.kids {
			parts[i] = showNode(k)
		}
		return "and(" + strings.Join(parts, ",") + ")"
	case orNode:
		parts := make([]string, len(n.kids))
		for i, k := range n.kids {
			parts[i] = showNode(k)
		}
		return "or(" + strings.Join(parts, ",") + ")"
	case notNode:
		return "not(" + showNode(n.kid) + ")"
	case clauseNode:
		vals := make([]string, len(n.values))
		for i, v := range n.values {
			vals[i] = fmt.Sprintf("%d:%q:%t:%q", v.kind, v.text, v.quoted, v.args)
		}
		return fmt.Sprintf("clause(%q %s %s)", n.field, n.op, strings.Join(vals, ";"))
	}
	return fmt.Sprintf("%T", n)
}

// FuzzFilterKeepsStructure: a configured filter that jql.Filter accepts and this JQL parser
// (Jira's grammar) parses stays exactly one operand when the connector combines it with its own
// clauses: the combined query's tree is AND(the filter's tree, the connector's clause). No quote,
// parenthesis or keyword in the filter can pull the connector's clause inside it or end it early.
func FuzzFilterKeepsStructure(f *testing.F) {
	for _, seed := range []string{
		`labels = "security"`, `labels = a) OR (b = c`, `project in (SEC, "OPS") OR labels = 'x)'`,
		`summary ~ "ORDER BY (" AND labels = ")"`, `NOT labels = a OR labels = b`, `a = "\")" OR (b = c)`,
		`assignee in membersOf("x") AND labels != y`, `a = b AND c = d OR e = f`, `((a = b))`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		c := jql.Filter(filter)
		if c.Err() != nil {
			return
		}
		alone, err := parseJQL(c.String())
		if err != nil || alone.where == nil || len(alone.orderBy) != 0 {
			return
		}
		combined, err := jql.Query{Where: jql.And(c, jql.Eq("priority", "High")), OrderBy: []jql.Order{jql.Asc("created")}}.Build()
		if err != nil {
			t.Fatalf("combining accepted filter %q: %v", filter, err)
		}
		q, err := parseJQL(combined)
		if err != nil {
			t.Fatalf("%q parses alone but %q does not: %v", filter, combined, err)
		}
		and, ok := q.where.(andNode)
		if !ok || len(and.kids) != 2 {
			t.Fatalf("%q: combined tree %s is not AND(filter, clause)", combined, showNode(q.where))
		}
		if got, want := showNode(and.kids[0]), showNode(alone.where); got != want {
			t.Fatalf("%q: the filter's operand is %s, alone it is %s", combined, got, want)
		}
		if got := showNode(and.kids[1]); got != `clause("priority" = 0:"High":true:[])` {
			t.Fatalf("%q: the connector's clause became %s", combined, got)
		}
		if len(q.orderBy) != 1 || q.orderBy[0] != (sortKey{field: "created"}) {
			t.Fatalf("%q: order %v", combined, q.orderBy)
		}
	})
}
