package activities_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// TestFindingSyncUnderFaults pushes 200 findings through a simulator that drops responses after
// committing creates and transitions, rate-limits in storms, answers 5xx at random and lags in
// search, with drains cut short as a killed worker would leave them. In the end there is exactly
// one issue per finding, every issue is in the finding's status, and Jira's echoes of the pushes
// change no finding.
//
// The rate limit refills on the simulator's clock only (SimulatedTime), which the test advances
// when the queue waits: on wall time, a machine slower than the refill rate would never empty the
// bucket and the storm the test relies on would not happen.
func TestFindingSyncUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault suite")
	}
	const n = 200
	s := newSyncSite(t, siteOpts{})
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = s.finding(fmt.Sprintf("F-%03d", i), findings.SeverityHigh, findings.StatusOpen)
	}
	s.srv.SetSearchLag(5 * time.Second)
	mustSetFault := func(route string, f jirasim.Fault) {
		t.Helper()
		if err := s.srv.SetFault(route, f); err != nil {
			t.Fatal(err)
		}
	}
	mustSetFault("* /rest/api/3/**", jirasim.Fault{ErrorRate: 0.05, ErrorStatus: 502,
		RateLimit: &jirasim.RateLimit{Rate: 40, Burst: 60, RetryAfter: 3, SimulatedTime: true}})

	// drainUntilEmpty re-arms the commit-then-drop faults every round and every fifth drain is
	// killed after a few milliseconds (called directly with a short context, as a worker that
	// dies mid-batch leaves the queue and the links).
	drainUntilEmpty := func(phase string) {
		t.Helper()
		for round := 1; ; round++ {
			if round > 300 {
				t.Fatalf("%s: queue not empty after %d drains (%d left)", phase, round-1, s.queueLen())
			}
			mustSetFault("POST /rest/api/3/issue", jirasim.Fault{CommitThenDrop: true, Times: 2})
			mustSetFault("POST /rest/api/3/issue/*/transitions", jirasim.Fault{CommitThenDrop: true, Times: 2})
			if round%5 == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Millisecond)
				res, err := s.acts.DrainFindingQueue(ctx, activities.DrainInput{ConnectionRef: s.ref, Max: 50})
				cancel()
				s.record(res, err)
				continue
			}
			res, err := s.drain(50)
			if err != nil {
				t.Fatalf("%s: drain: %v", phase, err)
			}
			if res.Remaining > 0 {
				continue
			}
			if res.NextDue == nil {
				if s.queueLen() == 0 {
					return
				}
				continue
			}
			if d := res.NextDue.Sub(s.clock.Now()); d > 0 {
				s.clock.Advance(d + time.Millisecond)
			}
		}
	}
	drainUntilEmpty("create")
	s.srv.ClearFaults()
	faultsSeen(t, s, "create", "commitThenDrop", "ratelimit", "error502")

	markers := s.markerCounts()
	if len(markers) != n || s.srv.IssueCount() != n {
		t.Fatalf("%d issues with %d distinct markers for %d findings", s.srv.IssueCount(), len(markers), n)
	}
	for m, c := range markers {
		if c != 1 {
			t.Errorf("marker %s on %d issues", m, c)
		}
	}
	for _, id := range ids {
		if l, ok := s.link(id); !ok || l.State != "linked" {
			t.Fatalf("finding %s: link %+v", id, l)
		}
	}

	// Every finding changes status; the pushes run under the same faults.
	targets := []findings.Status{findings.StatusResolved, findings.StatusAccepted, findings.StatusFalsePositive, findings.StatusTriaged}
	for i, id := range ids {
		s.setStatus(id, targets[i%len(targets)])
	}
	mustSetFault("* /rest/api/3/**", jirasim.Fault{ErrorRate: 0.05, ErrorStatus: 502,
		RateLimit: &jirasim.RateLimit{Rate: 40, Burst: 60, RetryAfter: 3, SimulatedTime: true}})
	drainUntilEmpty("transition")
	s.srv.ClearFaults()
	faultsSeen(t, s, "transition", "commitThenDrop", "ratelimit", "error502")

	// Jira's reports of those pushes (with every intermediate hop) come back, including those
	// of pushes whose answer was lost and which a later attempt found already landed: every one
	// is recognised as the connector's own echo and none changes a finding.
	echoes := s.changes()
	applied := 0
	for start := 0; start < len(echoes); start += activities.MaxApplyChanges {
		res := s.apply(echoes[start:min(start+activities.MaxApplyChanges, len(echoes))]...)
		applied += res.Applied
		if res.Requeued != 0 {
			t.Errorf("echoes requeued findings: %+v", res)
		}
	}
	if applied != 0 {
		t.Errorf("%d of %d echoes were applied as Jira changes", applied, len(echoes))
	}
	t.Logf("echoes applied as changes: %d of %d", applied, len(echoes))
	// And reconciliation agrees.
	for {
		res := s.reconcile()
		if res.Applied != 0 || res.Requeued != 0 {
			t.Errorf("reconciliation applied %+v", res)
		}
		if !res.Truncated {
			break
		}
	}

	if s.srv.IssueCount() != n {
		t.Errorf("%d issues after the transitions", s.srv.IssueCount())
	}
	for i, id := range ids {
		want := targets[i%len(targets)]
		st, src := s.findingStatus(id)
		if st != string(want) {
			t.Errorf("finding %d: %s (%s), want %s", i, st, src, want)
		}
		is := s.mustIssue(id)
		got, ok := findings.InboundStatus(s.cfg, findings.JiraStatus{ID: is.StatusID, Name: is.Status, CategoryKey: is.StatusCategory})
		if !ok || got != want {
			t.Errorf("finding %d is %s but its issue %s is %s", i, want, is.Key, is.Status)
		}
	}
	if s.queueLen() != 0 {
		t.Errorf("%d queue items left", s.queueLen())
	}
}

// faultsSeen checks that each fault really happened during a phase (so the suite cannot pass
// against a well-behaved simulator) and starts the next phase's count.
func faultsSeen(t *testing.T, s *syncSite, phase string, names ...string) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range s.srv.Requests() {
		for _, f := range strings.Split(r.Fault, ",") {
			seen[f]++
		}
	}
	for _, n := range names {
		if seen[n] == 0 {
			t.Errorf("%s: no request suffered %s", phase, n)
		}
	}
	t.Logf("%s: faults %v over %d requests", phase, seen, len(s.srv.Requests()))
	s.srv.ResetRequests()
}
