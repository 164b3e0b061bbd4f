package faultsuite

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The Temporal server is stopped (SIGTERM) while evidence syncs and issue creations run, kept
// down for a while (the API and the worker stay up and say they are not ready), and started again
// on the same SQLite file. The same workflow runs carry on from where they were, the work in
// flight completes, and the timers armed before the stop still fire: the periodic reconciliation
// keeps running, and a status changed in Jira — with no webhook registered to report it — reaches
// the finding through it.
func TestTemporalServerRestartMidRun(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{env: map[string]string{"FINDING_RECONCILE_INTERVAL": "3s"}})
	sc := s.openScene("temporal-restart", 6, 30, time.Second)
	all := append(append([]connection(nil), sc.fleet...), sc.findings)
	runIDs := map[uuid.UUID]string{}
	for _, c := range all {
		id, running := s.workflowRunID(c)
		if !running {
			t.Fatalf("workflow of %s is not running before the restart", c.id)
		}
		runIDs[c.id] = id
	}
	inFlight := s.runningRuns(sc.o)
	linkedAtStop := s.linkedCount(sc.findings)

	s.temporal.stop(30 * time.Second)
	stoppedAt := time.Now()
	eventually(t, "api and worker report Temporal unreachable", 30*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a, errA := httpStatus(ctx, s.apiURL+"/readyz")
		w, errW := httpStatus(ctx, s.workerURL+"/readyz")
		return a == http.StatusServiceUnavailable && w == http.StatusServiceUnavailable, fmt.Sprintf("api %d %v, worker %d %v", a, errA, w, errW)
	})
	// Down long enough for activities to finish without being able to report it.
	time.Sleep(time.Until(stoppedAt.Add(8 * time.Second)))
	t.Logf("stopped Temporal with %d runs in flight and %d of %d findings linked; restarting", len(inFlight), linkedAtStop, len(sc.ids))

	s.temporal.start(60 * time.Second)
	restartedAt := time.Now()
	s.waitTemporalHealthy(60 * time.Second)
	s.waitReadyAgain(t, 90*time.Second, "Temporal was down")
	sc.fleet[0].sim.clearFaults()
	sc.findings.sim.clearFaults()

	s.converge(sc, 4*time.Minute)
	for _, c := range all {
		id, running := s.workflowRunID(c)
		if !running || id != runIDs[c.id] {
			t.Errorf("workflow of %s: run %s running %v, want the run from before the restart (%s) still running", c.id, id, running, runIDs[c.id])
		}
	}

	// Timers: reconciliation runs every 3s by the workflow's timer; it must go on after the restart.
	reconciledAt := func() time.Time {
		var at *time.Time
		if err := s.db.QueryRow(context.Background(), `SELECT reconciled_at FROM connections WHERE id = $1`, sc.findings.id).Scan(&at); err != nil {
			t.Fatal(err)
		}
		if at == nil {
			return time.Time{}
		}
		return *at
	}
	var first time.Time
	eventually(t, "a reconciliation after the restart", 90*time.Second, func() (bool, string) {
		first = reconciledAt()
		return first.After(restartedAt), fmt.Sprintf("last reconciliation %s, restart %s", first, restartedAt)
	})
	eventually(t, "the next timer-driven reconciliation", 60*time.Second, func() (bool, string) {
		at := reconciledAt()
		return at.After(first), fmt.Sprintf("last reconciliation %s", at)
	})
	// A change in Jira with no webhook to carry it converges by the timer alone.
	var issueKey string
	if err := s.db.QueryRow(context.Background(), `SELECT issue_key FROM finding_issue_links WHERE finding_id = $1 AND connection_id = $2`,
		sc.ids[0], sc.findings.id).Scan(&issueKey); err != nil {
		t.Fatal(err)
	}
	sc.findings.sim.transition(issueKey, "In Progress")
	eventually(t, "the Jira change reconciled into the finding", 90*time.Second, func() (bool, string) {
		var status string
		if err := s.db.QueryRow(context.Background(), `SELECT status FROM findings WHERE id = $1`, sc.ids[0]).Scan(&status); err != nil {
			t.Fatal(err)
		}
		return status == "triaged", "finding is " + status
	})

	s.checkAll(sc.o)
	s.checkStaticEvidence(sc.fleet)
	s.checkFindingIssues(sc.o, sc.findings, sc.ids)
}
