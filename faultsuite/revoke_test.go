package faultsuite

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

// A connection is revoked while its sync is in flight (every Jira call slowed to three seconds)
// and while periodic reconciliation keeps calling Jira every two seconds. Once the revoke has
// completed, its credentials are gone, its workflow has ended, and Jira — a simulator used by this
// connection only, so every request in its log is this connection's — receives no request that
// started after that moment.
func TestRevokeWhileSyncInFlight(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{env: map[string]string{"FINDING_RECONCILE_INTERVAL": "2s"}})
	sim := s.startSim(simSpec{name: "jira-revoke", flavor: "cloud", issues: 60})
	o := s.newOrg("revoke")
	c := s.connectToken(o, sim)
	eventually(t, "the first sync", 60*time.Second, func() (bool, string) {
		n := s.count(`SELECT count(*) FROM connector_runs WHERE connection_id = $1 AND kind = 'sync' AND outcome = 'success'`, c.id)
		return n > 0, "no successful sync yet"
	})
	s.enableFindingSync(o, c)
	ids := s.createFindings(o, "revoke", 3)
	eventually(t, "findings linked", 60*time.Second, func() (bool, string) {
		n := s.linkedCount(c)
		return n == len(ids), fmt.Sprintf("%d of %d linked", n, len(ids))
	})

	sim.setFault("* /rest/api/3/**", jirasim.Fault{Latency: 3 * time.Second})
	seq := s.syncNow(o, c)
	eventually(t, "the sync in flight", 30*time.Second, func() (bool, string) {
		out, _ := s.runOutcome(o, syncKey(c, seq))
		return out == "running", fmt.Sprintf("sync %d is %q", seq, out)
	})
	time.Sleep(time.Second) // well into its first three-second call

	revokeStart := time.Now()
	r, err := s.call("DELETE", "/v1/connections/"+c.id.String(), o.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	credentialsCleared := func() (bool, string) {
		var status string
		var sealed, deleted, hook, signing bool
		if err := s.db.QueryRow(context.Background(), `SELECT status, sealed_credentials IS NOT NULL, deleted_at IS NOT NULL,
			webhook_secret_hash IS NOT NULL, webhook_signing_secret IS NOT NULL FROM connections WHERE id = $1`, c.id).
			Scan(&status, &sealed, &deleted, &hook, &signing); err != nil {
			t.Fatal(err)
		}
		return status == "revoked" && !sealed && deleted && !hook && !signing,
			fmt.Sprintf("status %s, credentials %v, deleted %v, webhook secret %v, signing secret %v", status, sealed, deleted, hook, signing)
	}
	switch r.status {
	case http.StatusOK:
		// The answer came after the cleanup.
		if ok, detail := credentialsCleared(); !ok {
			t.Fatalf("revoke answered 200 before the credentials were cleared: %s", detail)
		}
	case http.StatusAccepted:
		// The workflow is still stopping the sync; the revoke completes when the row says so.
		eventually(t, "the revoke to complete", 2*time.Minute, credentialsCleared)
	default:
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	revokeDone := time.Now()
	t.Logf("revoke answered %d after %s", r.status, revokeDone.Sub(revokeStart).Round(time.Millisecond))
	eventually(t, "the workflow to end", 60*time.Second, func() (bool, string) {
		_, running := s.workflowRunID(c)
		return !running, "still running"
	})
	// Several reconciliation periods and sync retry intervals pass.
	time.Sleep(8 * time.Second)

	inFlightAtRevoke := 0
	for _, rec := range sim.requests() {
		started := rec.Time.Add(-rec.Duration)
		if started.After(revokeDone) {
			t.Errorf("Jira request %s %s (%s) started %s after the revoke completed", rec.Method, rec.Path, rec.Operation, started.Sub(revokeDone))
		}
		if started.Before(revokeStart) && rec.Time.After(revokeStart) {
			inFlightAtRevoke++
		}
	}
	if inFlightAtRevoke == 0 {
		t.Error("no Jira request was in flight when the revoke began: the test proved nothing")
	}
	if got := s.mustCall("GET", "/v1/connections/"+c.id.String(), o.key, nil, http.StatusOK); got.str("status") != "revoked" {
		t.Errorf("API shows the connection as %s", got.str("status"))
	}
	// The run of the sync the revoke stopped must not stay "running" for ever: RevokeCleanup ends
	// it (failed, kind revoked) unless it finished first.
	switch out, _ := s.runOutcome(o, syncKey(c, seq)); out {
	case "failed", "success":
		if out == "success" {
			t.Logf("the sync in flight finished before the revoke's cancellation reached it")
		}
	default:
		t.Errorf("sync run %s of the revoked connection is %q after the revoke", syncKey(c, seq), out)
	}
	s.checkAll(o)
}
