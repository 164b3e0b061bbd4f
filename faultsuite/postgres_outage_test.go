package faultsuite

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Postgres becomes unreachable for the API and the worker while evidence syncs and issue
// creations run: every live session is cut mid-query and new ones are refused for ten seconds.
// Both processes report not ready and stay up; once Postgres is back the activities retry and
// finish, and nothing is half-written (every check in checkRuns and checkFindingIssues).
func TestPostgresUnreachableMidRun(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	sc := s.openScene("postgres-outage", 6, 30, time.Second)
	inFlight := s.runningRuns(sc.o)
	linkedAtCut := s.linkedCount(sc.findings)

	cutAt := time.Now()
	s.pgAPI.cut()
	s.pgWorker.cut()
	eventually(t, "api and worker report Postgres unreachable", 20*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a, errA := httpStatus(ctx, s.apiURL+"/readyz")
		w, errW := httpStatus(ctx, s.workerURL+"/readyz")
		return a == http.StatusServiceUnavailable && w == http.StatusServiceUnavailable, fmt.Sprintf("api %d %v, worker %d %v", a, errA, w, errW)
	})
	time.Sleep(time.Until(cutAt.Add(10 * time.Second)))
	s.pgAPI.restore()
	s.pgWorker.restore()
	t.Logf("Postgres was unreachable for %s with %d runs in flight and %d of %d findings linked", time.Since(cutAt).Round(time.Millisecond),
		len(inFlight), linkedAtCut, len(sc.ids))
	s.waitReadyAgain(t, 60*time.Second, "Postgres was unreachable")
	sc.fleet[0].sim.clearFaults()
	sc.findings.sim.clearFaults()

	s.converge(sc, 4*time.Minute)
	if n := s.retried(sc.o, inFlight); n == 0 {
		t.Errorf("none of the %d runs in flight during the outage needed a second attempt: %v", len(inFlight), inFlight)
	}
	if n := s.count(`SELECT count(*) FROM connector_runs WHERE org_id = $1 AND kind = 'sync' AND outcome <> 'success'`, sc.o.id); n != 0 {
		t.Errorf("%d sync runs did not succeed (Jira was only slow)", n)
	}
	s.checkAll(sc.o)
	s.checkStaticEvidence(sc.fleet)
	s.checkFindingIssues(sc.o, sc.findings, sc.ids)
}
