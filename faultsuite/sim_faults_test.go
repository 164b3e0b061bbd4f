package faultsuite

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

// A fleet of Cloud (API token) and Data Center (PAT) connections syncs while Jira misbehaves in
// every way the simulator knows — 503s and 5xx, a 429 storm, latency spikes, malformed JSON, reset
// connections and create responses lost after the issue was committed — and findings are pushed
// and transitioned through the same faults. Errors are recorded on the runs while the faults
// last; afterwards every connection is consistent (no run left running, active, syncing
// successfully again, its workflow running), every finding has exactly one issue in the right
// status, and no process panicked.
func TestSimulatorFaultsDuringFleetSync(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	cloud := s.startSim(simSpec{name: "jira-cloud", flavor: "cloud", issues: 200})
	dc := s.startSim(simSpec{name: "jira-dc", flavor: "datacenter", issues: 200})
	o := s.newOrg("sim-faults")

	// Cloud faults are on from the first sync. Each kind has a route of its own, so that one
	// fault's answer does not hide another's (who-am-I, which creating a connection calls, is left
	// alone).
	cloudFaults := map[string]jirasim.Fault{
		"GET /rest/api/3/project/search":            {Unavailable: true, UnavailableRetryAfter: 1, Times: 4},
		"POST /rest/api/3/search/approximate-count": {MalformedBody: true, Times: 6},
		"POST /rest/api/3/search/jql":               {RateLimit: &jirasim.RateLimit{Rate: 0.5, Burst: 2, RetryAfter: 1}},
		"* /rest/api/3/search/*":                    {Latency: 100 * time.Millisecond, Jitter: 2 * time.Second},
		"POST /rest/api/3/issue":                    {CommitThenDrop: true, Times: 5},
		"POST /rest/api/3/issue/*/transitions":      {ErrorRate: 0.3, ErrorStatus: http.StatusBadGateway},
	}
	for route, f := range cloudFaults {
		cloud.setFault(route, f)
	}
	cloudConns := s.connectConcurrently(8, func() connection { return s.connectToken(o, cloud) })
	dcConns := s.connectConcurrently(4, func() connection { return s.connectPAT(o, dc) })
	// Data Center faults cover every REST route, so they go on once the connections exist.
	dc.setFault("* /rest/api/2/**", jirasim.Fault{ErrorRate: 0.3, ErrorStatus: http.StatusInternalServerError,
		Latency: 50 * time.Millisecond, Jitter: time.Second})
	dc.setFault("GET /rest/api/2/project", jirasim.Fault{ResetConnection: true, Times: 3})
	fc := cloudConns[0]
	s.enableFindingSync(o, fc)
	ids := s.createFindings(o, "sim-faults", 20)
	fleet := append(append([]connection(nil), cloudConns...), dcConns...)
	for _, c := range fleet {
		s.syncNow(o, c)
	}

	// While the faults last, failed attempts leave their error on their (still running) run.
	errorKinds := map[string]int{}
	resolved := map[uuid.UUID]bool{}
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		rows, err := s.db.Query(context.Background(), `SELECT error_kind FROM connector_runs
			WHERE org_id = $1 AND outcome = 'running' AND error IS NOT NULL AND error_kind IS NOT NULL`, o.id)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var kind string
			if err := rows.Scan(&kind); err != nil {
				t.Fatal(err)
			}
			errorKinds[kind]++
		}
		rows.Close()
		// Resolve the first findings to get an issue, so their transitions run into the 502s.
		if len(resolved) < 5 {
			for _, id := range ids {
				if len(resolved) == 5 {
					break
				}
				if resolved[id] || s.count(`SELECT count(*) FROM finding_issue_links WHERE finding_id = $1 AND state = 'linked'`, id) == 0 {
					continue
				}
				s.mustCall("PATCH", "/v1/findings/"+id.String(), o.key, map[string]any{"status": "resolved"}, http.StatusOK)
				resolved[id] = true
			}
		}
	}
	if len(errorKinds) == 0 {
		t.Error("no run showed an error while Jira was failing")
	}
	t.Logf("errors seen on running runs (polls × kind): %v; %d findings resolved under faults", errorKinds, len(resolved))
	cloud.clearFaults()
	dc.clearFaults()

	// The simulators really did all of it.
	seen := map[string]bool{}
	for _, sim := range []*simProc{cloud, dc} {
		for _, r := range sim.requests() {
			for _, f := range strings.Split(r.Fault, ",") {
				seen[f] = true
			}
		}
	}
	for _, kind := range []string{"unavailable", "malformed", "ratelimit", "latency", "commitThenDrop", "reset", "error500"} {
		if !seen[kind] {
			t.Errorf("the simulators never injected %s (saw %v): the test would not prove it is survived", kind, keys(seen))
		}
	}

	// Converged: every finding linked (once) and pushed, every run finished.
	eventually(t, "every finding linked and nothing queued", 4*time.Minute, func() (bool, string) {
		linked := s.linkedCount(fc)
		queued := s.count(`SELECT count(*) FROM finding_sync_queue WHERE connection_id = $1`, fc.id)
		return linked == len(ids) && queued == 0, fmt.Sprintf("%d of %d linked, %d queued", linked, len(ids), queued)
	})
	eventually(t, "every run finished", 4*time.Minute, func() (bool, string) {
		running := s.runningRuns(o)
		return len(running) == 0, fmt.Sprintf("still running: %v", running)
	})
	if n := s.count(`SELECT count(*) FROM connector_runs WHERE org_id = $1 AND kind = 'sync' AND (attempts >= 2 OR outcome = 'failed')`, o.id); n == 0 {
		t.Error("no sync needed a retry or failed, although Jira answered 503 to project counts")
	}
	if n := s.count(`SELECT count(*) FROM connector_runs WHERE org_id = $1 AND kind = 'sync' AND outcome IN ('partial', 'failed')`, o.id); n > 0 {
		t.Logf("%d sync runs ended partial or failed under the faults (their errors are checked below)", n)
	}

	// Consistent: each connection is active and syncs successfully now that Jira behaves.
	again := time.Now()
	seqs := map[uuid.UUID]int64{}
	for _, c := range fleet {
		seqs[c.id] = s.syncNow(o, c)
	}
	for _, c := range fleet {
		eventually(t, "a clean sync of "+c.id.String(), 2*time.Minute, func() (bool, string) {
			out, attempts := s.runOutcome(o, syncKey(c, seqs[c.id]))
			return out == "success", fmt.Sprintf("sync %d is %q after %d attempts", seqs[c.id], out, attempts)
		})
		var status string
		var stale, sealed bool
		var lastSuccess *time.Time
		if err := s.db.QueryRow(context.Background(), `SELECT status, stale, sealed_credentials IS NOT NULL, last_success_at FROM connections WHERE id = $1`,
			c.id).Scan(&status, &stale, &sealed, &lastSuccess); err != nil {
			t.Fatal(err)
		}
		if status != "active" || stale || !sealed || lastSuccess == nil || lastSuccess.Before(again) {
			t.Errorf("connection %s: status %s stale %v credentials %v last success %v (want active, fresh, after %s)", c.id, status, stale, sealed, lastSuccess, again)
		}
		if _, running := s.workflowRunID(c); !running {
			t.Errorf("workflow of %s is not running", c.id)
		}
	}

	s.checkAll(o)
	s.checkFindingIssues(o, fc, ids)
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
