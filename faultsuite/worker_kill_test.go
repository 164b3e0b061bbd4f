package faultsuite

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

// slowSync makes every Jira call of an evidence sync take one to two seconds, so a fleet's syncs
// are in flight for several seconds (creation's who-am-I stays fast).
func slowSync(sim *simProc) {
	// A sync makes 12 calls, most of them to these routes: about 9 s per sync.
	slow := jirasim.Fault{Latency: 500 * time.Millisecond, Jitter: 500 * time.Millisecond}
	for _, route := range []string{"GET /rest/api/3/project/search", "POST /rest/api/3/search/approximate-count", "POST /rest/api/3/search/jql"} {
		sim.setFault(route, slow)
	}
}

// faultScene is the common opening of the process-fault tests: a fleet of evidence connections to
// one (unchanging) site whose syncs are slow, and a finding-sync connection to another site whose
// issue creations are slow, with both kinds of work under way.
type faultScene struct {
	o        org
	fleet    []connection
	findings connection
	ids      []uuid.UUID
	seqs     map[uuid.UUID]int64 // the fleet's sync-now sequence numbers
}

func (s *stack) openScene(name string, fleetSize, nFindings int, createLatency time.Duration) faultScene {
	s.t.Helper()
	fleetSim := s.startSim(simSpec{name: "jira-fleet", flavor: "cloud", issues: 300})
	issueSim := s.startSim(simSpec{name: "jira-issues", flavor: "cloud", issues: 40})
	sc := faultScene{o: s.newOrg(name), seqs: map[uuid.UUID]int64{}}
	slowSync(fleetSim)
	sc.fleet = s.connectConcurrently(fleetSize, func() connection { return s.connectToken(sc.o, fleetSim) })
	sc.findings = s.connectToken(sc.o, issueSim)
	s.enableFindingSync(sc.o, sc.findings)
	issueSim.setFault("POST /rest/api/3/issue", jirasim.Fault{Latency: createLatency})
	sc.ids = s.createFindings(sc.o, name, nFindings)
	eventually(s.t, "issue creation under way", 90*time.Second, func() (bool, string) {
		n := s.linkedCount(sc.findings)
		return n >= 3, fmt.Sprintf("%d of %d findings linked", n, nFindings)
	})
	for _, c := range sc.fleet {
		sc.seqs[c.id] = s.syncNow(sc.o, c)
	}
	eventually(s.t, "fleet syncs in flight", 60*time.Second, func() (bool, string) {
		running := 0
		for _, c := range sc.fleet {
			if out, _ := s.runOutcome(sc.o, syncKey(c, sc.seqs[c.id])); out == "running" {
				running++
			}
		}
		return running >= 2, fmt.Sprintf("%d of %d sync-now runs running", running, len(sc.fleet))
	})
	return sc
}

// converge waits until the scene's work is done: every finding linked, nothing queued, no run
// running, and the fleet's sync-now runs successful.
func (s *stack) converge(sc faultScene, timeout time.Duration) {
	s.t.Helper()
	eventually(s.t, "every finding linked and nothing queued", timeout, func() (bool, string) {
		linked := s.linkedCount(sc.findings)
		queued := s.count(`SELECT count(*) FROM finding_sync_queue WHERE connection_id = $1`, sc.findings.id)
		return linked == len(sc.ids) && queued == 0, fmt.Sprintf("%d of %d linked, %d queued", linked, len(sc.ids), queued)
	})
	// A sync-now run starts only after the sync ahead of it ends, so "nothing running" alone can
	// be a gap between two runs: wait for each fleet connection's own run to have ended as well.
	eventually(s.t, "every run finished", timeout, func() (bool, string) {
		waiting := 0
		for _, c := range sc.fleet {
			if out, _ := s.runOutcome(sc.o, syncKey(c, sc.seqs[c.id])); out == "" || out == "running" {
				waiting++
			}
		}
		running := s.runningRuns(sc.o)
		return len(running) == 0 && waiting == 0, fmt.Sprintf("still running: %v; %d sync-now runs not ended", running, waiting)
	})
	for _, c := range sc.fleet {
		if out, attempts := s.runOutcome(sc.o, syncKey(c, sc.seqs[c.id])); out != "success" {
			s.t.Errorf("connection %s: sync %d ended %q after %d attempts, want success", c.id, sc.seqs[c.id], out, attempts)
		}
	}
}

// retried counts the runs among keys that needed more than one attempt.
func (s *stack) retried(o org, keys []string) int {
	n := 0
	for _, k := range keys {
		if _, attempts := s.runOutcome(o, k); attempts >= 2 {
			n++
		}
	}
	return n
}

// The worker is SIGKILLed while evidence syncs and issue creations are in flight — and, to make
// the nastiest case certain rather than lucky, while Postgres is stalled for it, so that an issue
// Jira has already created is not yet recorded — then restarted. Every run completes (in the
// same run rows), no evidence is duplicated, and every finding has exactly one issue.
func TestWorkerKilledMidSyncAndMidIssueCreation(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	sc := s.openScene("worker-kill", 8, 30, time.Second)
	inFlight := s.runningRuns(sc.o)

	// Postgres stops answering the worker; Jira keeps answering. A create that Jira commits now
	// can no longer be recorded by the worker.
	// (Creates answered in the first 50ms are not counted: the simulator logs a request just after
	// answering it, so one answered just before the stall could have been recorded in time.)
	stalled := time.Now()
	s.pgWorker.pause()
	committed := 0
	for deadline := time.Now().Add(6 * time.Second); committed == 0 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		committed = sc.findings.sim.createsCommittedSince(stalled.Add(50 * time.Millisecond))
	}
	linkedAtKill := s.linkedCount(sc.findings)
	s.worker.kill()
	// Whatever the dead worker had sent is dropped, not delivered later.
	s.pgWorker.cut()
	s.pgWorker.resume()
	s.pgWorker.restore()
	t.Logf("killed the worker with %d runs in flight, %d of %d findings linked, %d issue(s) created in Jira but not recorded",
		len(inFlight), linkedAtKill, len(sc.ids), committed)
	if linkedAtKill == len(sc.ids) {
		t.Fatal("every issue was created before the kill: the test proved nothing")
	}

	s.worker.start(60 * time.Second)
	sc.fleet[0].sim.clearFaults()
	sc.findings.sim.clearFaults()
	// Recovery is bounded by the activities' heartbeat timeouts (45s for a sync, 75s for a drain),
	// after which Temporal retries them on the new worker.
	s.converge(sc, 4*time.Minute)
	// The issue Jira created while the worker could not record it was found by its marker, not
	// created again.
	if recovered := s.count(`SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'finding.issue_created'
		AND (metadata->>'found_by_marker')::boolean`, sc.o.id); recovered < committed {
		t.Errorf("%d issue(s) were created in Jira but not recorded at the kill; only %d found by their marker afterwards", committed, recovered)
	}
	if n := s.retried(sc.o, inFlight); n == 0 {
		t.Errorf("none of the %d runs in flight at the kill needed a second attempt: %v", len(inFlight), inFlight)
	}
	if n := s.count(`SELECT count(*) FROM connector_runs WHERE org_id = $1 AND kind = 'sync' AND outcome <> 'success'`, sc.o.id); n != 0 {
		t.Errorf("%d sync runs did not succeed (Jira was only slow)", n)
	}
	s.checkAll(sc.o)
	s.checkStaticEvidence(sc.fleet)
	s.checkFindingIssues(sc.o, sc.findings, sc.ids)
}
