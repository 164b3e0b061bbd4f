package jirasim

import (
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"
)

// TestPlannerMatchesScan: whatever index or aggregate the planner answers a query from, the count
// and the search results are those of evaluating the query on every issue. It guards the
// shortcuts (cubes, index ranges, label lists, conjuncts the candidates already satisfy).
func TestPlannerMatchesScan(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	s := New(Options{Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Seed(3, SeedSpec{Projects: 8, Issues: 4000, SecurityShare: 0.2, ResolvedRecentShare: 0.3}); err != nil {
		t.Fatal(err)
	}
	queries := []string{
		`project is not EMPTY`,
		`statusCategory != Done`,
		`labels = "security" AND statusCategory = Done AND resolution IS NOT EMPTY AND resolved >= -30d ORDER BY resolved DESC`,
		`labels = security AND resolved >= -30d AND resolved <= -2d`,
		`labels in (security, scanner) AND resolved >= -60d`,
		`labels in (security, scanner)`,
		`labels in (security, "never-used-label")`,
		`labels = security AND resolved >= -30d AND resolved < -40d`,
		`labels = security AND NOT resolved >= -30d`,
		`labels != security AND resolved >= -30d`,
		`labels is EMPTY AND resolved >= -30d`,
		`resolved >= -30d`,
		`resolved >= -30d AND statusCategory != Done`,
		`resolved >= -90d AND resolved >= -10d AND labels = security`,
		`labels = security AND (resolved >= -30d OR statusCategory = "In Progress")`,
		`labels = backend AND labels = "tech-debt"`,
		`created >= -30d AND labels = security`,
		`project = SEC AND labels = security AND resolved >= -30d`,
		// The connector's remediation counts, answered from the label's (status, priority) cells.
		`(labels = "security") AND (statusCategory = "Done") AND (resolved >= -90d)`,
		`(labels = "security") AND (statusCategory != "Done") AND (priority = "High") AND (created < -30d)`,
		`(labels = "security") AND (statusCategory != "Done") AND (priority = "Highest") AND (created < -7d)`,
		`(labels = "security") AND (statusCategory != "Done")`,
		`labels = security AND (priority in (High, Low) OR status = "In Progress") AND created >= -400d AND created < -30d`,
		`labels = scanner AND NOT priority = Medium AND resolved >= -60d AND resolved <= -10d`,
		`labels = security AND priority = High AND created < -30d AND resolved >= -90d`,
		`labels = "never-used-label" AND statusCategory != Done AND created < -7d`,
		`labels = security AND statusCategory = Done AND resolution IS NOT EMPTY AND resolved >= -30d`,
		`labels = security AND resolution = Duplicate`,
		`labels = security AND issuetype = Bug AND created < -30d`,
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	matched := 0
	for _, q := range queries {
		cq, err := compileJQL(q, compileCtx{st: s.st, now: s.Now(), me: s.admin + 1})
		if err != nil {
			t.Errorf("compile %q: %v", q, err)
			continue
		}
		want := 0
		for idx := range s.st.issues {
			if cq.root == nil || cq.root.eval(s.st, &s.st.issues[idx], uint32(idx)) {
				want++
			}
		}
		if want > 0 {
			matched++
		}
		if got := s.countLocked(cq, nil); got != want {
			t.Errorf("%q: count %d, a scan finds %d", q, got, want)
		}
		if page, _ := s.searchLocked(cq, nil, 0, len(s.st.issues)+1); len(page) != want {
			t.Errorf("%q: search returned %d, a scan finds %d", q, len(page), want)
		}
	}
	// The seeded site must exercise the shortcuts, not only empty answers.
	if matched < len(queries)-4 {
		t.Errorf("only %d of %d queries match anything in the seeded site", matched, len(queries))
	}
}

// TestCellCountsFollowChanges: the per-label (status, priority) cells stay exact while issues
// are created, transitioned, reopened and relabelled after seeding.
func TestCellCountsFollowChanges(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	s := New(Options{Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Seed(5, SeedSpec{Projects: 3, Issues: 600, SecurityShare: 0.4, ResolvedRecentShare: 0.5}); err != nil {
		t.Fatal(err)
	}
	// New issues are created now, so creation order stays index order (creation ranges can be
	// answered from the cells).
	for _, p := range []string{"High", "Highest", "Low"} {
		if _, err := s.AddIssue(IssueSpec{Project: "SEC", Summary: "new", Labels: []string{"security"}, Priority: p, Silent: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddIssue(IssueSpec{Project: "SEC", Summary: "resolved", Labels: []string{"security"}, Priority: p, Status: "Done", Silent: true}); err != nil {
			t.Fatal(err)
		}
	}
	for n := 1; n <= 30; n++ {
		key := "SEC-" + strconv.Itoa(n)
		is, ok := s.Issue(key)
		if !ok {
			continue
		}
		path := []string{"To Do"} // reopen
		switch is.Status {
		case "To Do":
			path = []string{"In Progress", "Done"}
		case "In Progress":
			path = []string{"Done"}
		}
		for _, to := range path {
			if err := s.TransitionAsHuman(key, to); err != nil {
				t.Fatalf("%s to %s: %v", key, to, err)
			}
		}
		if n%5 == 0 {
			if err := s.EditAsHuman(key, IssueEdit{Labels: &[]string{"backend"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	queries := []string{
		`labels = security AND statusCategory = Done AND resolved >= -90d`,
		`labels = security AND statusCategory != Done AND priority = High AND created < -30d`,
		`labels = security AND statusCategory != Done AND priority = Highest`,
		`labels = backend AND statusCategory = Done AND resolved >= -1d`,
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, q := range queries {
		cq, err := compileJQL(q, compileCtx{st: s.st, now: s.Now(), me: s.admin + 1})
		if err != nil {
			t.Fatalf("compile %q: %v", q, err)
		}
		if _, ok := s.st.cellCount(cq.root); !ok {
			t.Errorf("%q is not answered from the cells", q)
		}
		want := 0
		for idx := range s.st.issues {
			if cq.root.eval(s.st, &s.st.issues[idx], uint32(idx)) {
				want++
			}
		}
		if got := s.countLocked(cq, nil); got != want {
			t.Errorf("%q: count %d, a scan finds %d", q, got, want)
		}
	}
}
