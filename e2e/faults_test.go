package e2e

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	sdkworker "go.temporal.io/sdk/worker"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"github.com/jiraconnect/jiraconnect/worker"
)

// startWorker runs a worker for the stack (manual-worker stacks only) and returns it for Stop.
func (s *stack) startWorker() sdkworker.Worker {
	s.t.Helper()
	acts, err := activities.New(activities.Deps{DB: s.core.DB, Connections: s.core.Connections,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "e2e", PublicURL: s.api,
		// No search lag in this simulator: a short window keeps the test fast without changing
		// what is proven (a retry never creates a second issue).
		SearchConsistencyWindow: time.Second})
	if err != nil {
		s.t.Fatal(err)
	}
	if err := worker.EnsureSearchAttributes(s.ctx, s.tc, s.core.Config.TemporalNamespace); err != nil {
		s.t.Fatal(err)
	}
	w := worker.New(s.tc, s.core.Config.TaskQueue, acts)
	if err := w.Start(); err != nil {
		s.t.Fatal(err)
	}
	return w
}

// 200 findings pushed while Jira commits every create and transition but loses the response,
// rate-limits creates, fails some searches, and the worker is stopped mid-run and replaced:
// exactly 200 issues, every status in sync, nothing lost.
func TestFindingSyncSurvivesFaultsAndWorkerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 200 findings through injected faults")
	}
	s := newStackWith(t, map[string]string{"E2E_MANUAL_WORKER": "1"})
	w1 := s.startWorker()
	key := s.org("faults")
	s.findingSyncSetup(key)
	for route, f := range map[string]jirasim.Fault{
		"POST /rest/api/3/issue":               {CommitThenDrop: true, RateLimit: &jirasim.RateLimit{Rate: 40, Burst: 20, RetryAfter: 1}},
		"POST /rest/api/3/issue/*/transitions": {CommitThenDrop: true, ErrorRate: 0.05, ErrorStatus: 502},
		"POST /rest/api/3/search/jql":          {ErrorRate: 0.05, ErrorStatus: 503},
	} {
		if err := s.cloud.SetFault(route, f); err != nil {
			t.Fatal(err)
		}
	}
	const n = 200
	ids := make([]string, n)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 8 {
				r := s.call("POST", "/v1/findings", key, map[string]any{"external_id": fmt.Sprintf("fault-%03d", i),
					"title": fmt.Sprintf("Finding %d", i), "severity": "high", "status": "open"})
				if r.status != 201 {
					t.Errorf("finding %d: %d %s", i, r.status, r.raw)
					return
				}
				ids[i] = r.str("id")
			}
		}()
	}
	// The worker dies while the pushes are in flight; another takes over.
	time.Sleep(1500 * time.Millisecond)
	w1.Stop()
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	w2 := s.startWorker()
	defer w2.Stop()

	owner := testDB.Owner(t)
	linked := func() int {
		var c int
		if err := owner.QueryRow(s.ctx, `SELECT count(*) FROM finding_issue_links WHERE state = 'linked'`).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	s.eventually("200 findings linked", 150*time.Second, func() bool { return linked() == n })

	// Resolve a quarter of them; their issues reach Done through the same faults.
	for i := 0; i < n; i += 4 {
		if r := s.call("PATCH", "/v1/findings/"+ids[i], key, map[string]any{"status": "resolved"}); r.status != 200 {
			t.Fatal(r.raw)
		}
	}
	s.eventually("resolved findings' issues Done", 150*time.Second, func() bool {
		var pending int
		if err := owner.QueryRow(s.ctx, `SELECT count(*) FROM finding_sync_queue`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		return pending == 0
	})
	s.cloud.ClearFaults()

	// Exactly one issue per finding, each in its finding's status.
	markers := map[string]int{}
	for i := 1; i <= s.cloud.IssueCount()+n; i++ {
		iss, ok := s.cloud.Issue("SEC-" + itoa(i))
		if !ok {
			continue
		}
		for _, l := range iss.Labels {
			if strings.HasPrefix(l, "jc-") {
				markers[l]++
			}
		}
	}
	if len(markers) != n {
		t.Fatalf("%d findings have issues, want %d", len(markers), n)
	}
	for m, c := range markers {
		if c != 1 {
			t.Fatalf("marker %s on %d issues", m, c)
		}
	}
	rows, err := owner.Query(s.ctx, `SELECT f.status, l.issue_key FROM findings f JOIN finding_issue_links l ON l.finding_id = f.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := map[string]string{"open": "To Do", "resolved": "Done"}
	for rows.Next() {
		var status, issueKey string
		if err := rows.Scan(&status, &issueKey); err != nil {
			t.Fatal(err)
		}
		if iss, _ := s.cloud.Issue(issueKey); iss.Status != want[status] {
			t.Errorf("finding %s but issue %s is %s", status, issueKey, iss.Status)
		}
	}
}
