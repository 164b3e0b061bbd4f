package faultsuite

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Two API processes and two workers use one OAuth connection at once, for several lifetimes of
// its access token, against a Jira whose refresh tokens rotate with no reuse leeway at all: the
// first reuse of a spent refresh token would revoke the grant and send the tenant back to the
// consent screen. The APIs validate the finding-sync configuration with Jira over and over, the
// workers sync, test and reconcile. Every refresh is the only one of its expiry (refreshes are
// never closer than the token's refresh margin), the token endpoint refuses nothing, no run fails
// and the connection stays active.
func TestOAuthRefreshIsSingleFlightAcrossProcesses(t *testing.T) {
	t.Parallel()
	const ttl = 20 * time.Second // refreshed after half its life: every 10 s
	s := newStack(t, stackOptions{
		oauth:       &simSpec{name: "jira-oauth", flavor: "cloud", issues: 60, tokenTTL: ttl, noLeeway: true},
		moreAPIs:    1,
		moreWorkers: 1,
		// Reconciliation would refresh on its own schedule; the bursts decide when tokens are needed.
		env: map[string]string{"FINDING_RECONCILE_INTERVAL": "1h"},
	})
	sim := s.oauthSim
	o := s.newOrg("refresh")
	created := s.mustCall("POST", "/v1/connections", o.key, map[string]any{"kind": "cloud_oauth", "site_url": sim.URL, "finding_sync": true}, http.StatusCreated)
	connID := created.str("id")
	hc := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(created.str("authorize_url"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("consent: %d %v", resp.StatusCode, err)
	}
	s.mustCall("GET", callback.RequestURI(), "", nil, http.StatusOK)
	eventually(t, "the first sync", 60*time.Second, func() (bool, string) {
		n := s.count(`SELECT count(*) FROM connector_runs WHERE connection_id = $1 AND kind = 'sync' AND outcome = 'success'`, connID)
		return n > 0, "no successful sync yet"
	})
	connectedAt := time.Now()
	s.mustCall("PUT", "/v1/connections/"+connID+"/finding-sync", o.key, map[string]any{"project_key": "SEC", "issue_type": "10005"}, http.StatusOK)

	// Bursts: the moment the access token enters its refresh margin, every process needs a token
	// at once — both APIs validate the finding-sync configuration with Jira (eight requests each),
	// and both APIs ask for a sync and a connection test, which the workers run.
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	check := func(name string, r reply, err error, ok ...int) {
		switch {
		case err != nil:
			fail("%s: %v", name, err)
		case r.status >= 300 && !slices.Contains(ok, r.status):
			fail("%s: %d %.300s", name, r.status, r.raw)
		}
	}
	lastRefresh := func() time.Time {
		var last time.Time
		for _, r := range sim.requests() {
			if r.Path == "/oauth/token" && r.Time.After(last) {
				last = r.Time
			}
		}
		return last
	}
	findingSync := map[string]any{"project_key": "SEC", "issue_type": "10005"}
	const rounds = 4
	for round := 1; round <= rounds; round++ {
		time.Sleep(time.Until(lastRefresh().Add(ttl/2 + 100*time.Millisecond)))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, base := range s.apiURLs {
			for j := range 8 {
				wg.Go(func() {
					<-start
					r, err := s.callAt(base, "PUT", "/v1/connections/"+connID+"/finding-sync", o.key, findingSync)
					check(fmt.Sprintf("round %d api-%d validation %d", round, i+1, j), r, err)
				})
			}
			wg.Go(func() {
				<-start
				r, err := s.callAt(base, "POST", "/v1/connections/"+connID+"/sync", o.key, nil)
				check(fmt.Sprintf("round %d api-%d sync", round, i+1), r, err, http.StatusConflict)
			})
			wg.Go(func() {
				<-start
				r, err := s.callAt(base, "POST", "/v1/connections/"+connID+"/test", o.key, nil)
				check(fmt.Sprintf("round %d api-%d test", round, i+1), r, err, http.StatusGatewayTimeout)
			})
		}
		close(start)
		wg.Wait()
	}

	for _, f := range failures {
		t.Error(f)
	}
	// Refreshes: every token-endpoint call after the consent's code exchange.
	var refreshes []time.Time
	var refused []string
	for _, r := range sim.requests() {
		if r.Path != "/oauth/token" || r.Time.Before(connectedAt) {
			continue
		}
		refreshes = append(refreshes, r.Time)
		if r.Status != http.StatusOK {
			refused = append(refused, fmt.Sprintf("%s: %d", r.Time.Format(time.RFC3339Nano), r.Status))
		}
	}
	if len(refused) > 0 {
		t.Errorf("the token endpoint refused %d refreshes (a spent refresh token was presented): %v", len(refused), refused)
	}
	if len(refreshes) < rounds {
		t.Errorf("%d refreshes in %d rounds: the processes did not need new tokens", len(refreshes), rounds)
	}
	for i := 1; i < len(refreshes); i++ {
		if gap := refreshes[i].Sub(refreshes[i-1]); gap < ttl/2-2*time.Second {
			t.Errorf("refreshes %d and %d only %s apart: two refreshes for one expiry", i, i+1, gap)
		}
	}
	if n := s.count(`SELECT count(*) FROM connector_runs WHERE connection_id = $1 AND outcome = 'failed'`, connID); n != 0 {
		t.Errorf("%d runs failed", n)
	}
	var status string
	if err := s.db.QueryRow(context.Background(), `SELECT status FROM connections WHERE id = $1`, connID).Scan(&status); err != nil || status != "active" {
		t.Errorf("connection %s (%v), want active", status, err)
	}
	rotatedBy, adoptedBy := 0, 0
	for _, p := range append(s.apis, s.workers...) {
		l := p.log()
		if strings.Contains(l, "oauth tokens rotated") {
			rotatedBy++
		}
		if strings.Contains(l, "oauth tokens taken from storage") {
			adoptedBy++
		}
	}
	t.Logf("%d refreshes in %d rounds; %d processes rotated tokens, %d took tokens another had rotated", len(refreshes), rounds, rotatedBy, adoptedBy)
	s.checkLogs()
}
