package jirasim

import (
	"io"
	"log/slog"
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
