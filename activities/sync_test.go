package activities_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/evidence"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// fixture is a small site with known answers: 2 projects, 7 issues, 2 of them open, and exactly 3
// security tickets resolved within the last 30 days.
type fixture struct {
	projects, total, open int
	resolved              []string // keys of the recent resolved security tickets, sorted
}

// items is the number of evidence items a sync of the fixture stores: project inventory, ticket
// volume, sample summary, security remediation, and one per resolved ticket.
func (f fixture) items() int { return 4 + len(f.resolved) }

// defaultSyncCalls is the Jira calls of a sync with the default configuration, the same at every
// site size: project count, total and open counts and one sample page (4), then the security
// remediation's resolved count, resolved-ticket page and oldest-open search (3) and one
// open-past-SLA count per default priority (5).
const defaultSyncCalls = 4 + 3 + 5

func seedFixture(t *testing.T, srv *jirasim.Server) fixture {
	t.Helper()
	for _, key := range []string{"SEC", "APP"} {
		if _, err := srv.AddProject(jirasim.ProjectSpec{Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	assignee := adminEmail
	if srv.Flavor() == jirasim.DataCenter {
		assignee = "admin"
	}
	now := srv.Now()
	add := func(spec jirasim.IssueSpec) string {
		t.Helper()
		spec.Silent = true
		is, err := srv.AddIssue(spec)
		if err != nil {
			t.Fatal(err)
		}
		return is.Key
	}
	var f fixture
	for i, days := range []int{1, 5, 20} {
		f.resolved = append(f.resolved, add(jirasim.IssueSpec{
			Project: "SEC", IssueType: "Bug", Summary: fmt.Sprintf("Patch CVE-2026-%04d", i), Labels: []string{"security"},
			Status: "Done", Resolution: "Done", Priority: "High", Assignee: assignee,
			Created: now.AddDate(0, 0, -days-3), Resolved: now.AddDate(0, 0, -days),
		}))
	}
	// Resolved too long ago, resolved but not a security ticket, and open work.
	add(jirasim.IssueSpec{Project: "SEC", IssueType: "Bug", Summary: "Old fix", Labels: []string{"security"}, Status: "Done",
		Resolution: "Done", Created: now.AddDate(0, 0, -90), Resolved: now.AddDate(0, 0, -60)})
	add(jirasim.IssueSpec{Project: "APP", IssueType: "Task", Summary: "Ship it", Status: "Done", Resolution: "Done",
		Created: now.AddDate(0, 0, -9), Resolved: now.AddDate(0, 0, -2)})
	add(jirasim.IssueSpec{Project: "SEC", IssueType: "Bug", Summary: "Open finding", Labels: []string{"security"}})
	add(jirasim.IssueSpec{Project: "APP", IssueType: "Task", Summary: "Backlog item"})
	slices.Sort(f.resolved)
	f.projects, f.total, f.open = 2, 7, 2
	return f
}

type evidenceRow struct {
	Type        string
	Subject     string
	Payload     json.RawMessage
	Provenance  evidence.Provenance
	Fingerprint string
}

func (h *harness) evidenceOf(connID uuid.UUID) []evidenceRow {
	h.t.Helper()
	rows, err := h.owner().Query(context.Background(),
		`SELECT type, subject, payload, provenance, fingerprint FROM evidence WHERE connection_id = $1 ORDER BY type, subject, created_at`, connID)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []evidenceRow
	for rows.Next() {
		var r evidenceRow
		var prov []byte
		if err := rows.Scan(&r.Type, &r.Subject, &r.Payload, &prov, &r.Fingerprint); err != nil {
			h.t.Fatal(err)
		}
		if err := json.Unmarshal(prov, &r.Provenance); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestSyncEvidenceForEachConnectionKind(t *testing.T) {
	for _, tc := range []struct {
		kind   connections.Kind
		flavor jirasim.Flavor
	}{
		{connections.KindCloudToken, jirasim.Cloud},
		{connections.KindDataCenterPAT, jirasim.DataCenter},
		{connections.KindCloudOAuth, jirasim.Cloud},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			h := newHarness(t)
			srv := startSim(t, tc.flavor, h.log)
			fx := seedFixture(t, srv)
			ref := h.connect(tc.kind, srv, nil)
			srv.ResetRequests()

			res, err := h.sync(ref, 1)
			if err != nil {
				t.Fatal(err)
			}
			wantItems := fx.items()
			if res.Outcome != activities.OutcomeSuccess || res.JiraCalls != defaultSyncCalls || res.NewEvidence != wantItems || res.Observed != wantItems {
				t.Fatalf("result %+v, want success, %d calls, %d new and observed", res, defaultSyncCalls, wantItems)
			}
			if n := jiraRequests(srv); n != defaultSyncCalls {
				t.Fatalf("simulator served %d REST requests, want %d: %v", n, defaultSyncCalls, srv.OperationCounts())
			}

			runs := h.runs(ref.ConnectionID)
			if len(runs) != 1 {
				t.Fatalf("%d runs", len(runs))
			}
			r := runs[0]
			if r.ID != res.ConnectorRunID || r.Outcome != "success" || r.JiraCalls != defaultSyncCalls || r.Error != nil || r.FinishedAt == nil ||
				r.Attempts != 1 || r.Trigger != "schedule" {
				t.Fatalf("run row %+v", r)
			}

			rows := h.evidenceOf(ref.ConnectionID)
			if len(rows) != wantItems {
				t.Fatalf("%d evidence rows, want %d", len(rows), wantItems)
			}
			byType := map[string][]evidenceRow{}
			for _, row := range rows {
				byType[row.Type] = append(byType[row.Type], row)
				p := row.Provenance
				if p.ConnectorVersion != "test-1.2.3" || len(p.Queries) == 0 || len(p.Queries[0].ResponseSHA256) != 64 || p.CollectedAt.IsZero() {
					t.Errorf("%s %s: provenance %+v", row.Type, row.Subject, p)
				}
			}
			var inv evidence.ProjectInventory
			mustDecode(t, byType[string(evidence.TypeProjectInventory)], &inv)
			if inv.ProjectCount != int64(fx.projects) {
				t.Errorf("project count %d, want %d", inv.ProjectCount, fx.projects)
			}
			var vol evidence.TicketVolume
			mustDecode(t, byType[string(evidence.TypeTicketVolume)], &vol)
			if vol.TotalCount != int64(fx.total) || vol.OpenCount != int64(fx.open) ||
				vol.TotalJQL != "project is not EMPTY" || vol.OpenJQL != `statusCategory != "Done"` {
				t.Errorf("ticket volume %+v", vol)
			}
			// Counts from Cloud's approximate-count are recorded as estimates; Data Center's
			// search totals are exact.
			approximate := tc.flavor == jirasim.Cloud
			if q := byType[string(evidence.TypeTicketVolume)][0].Provenance.Queries; len(q) != 2 || q[0].JQL != vol.TotalJQL || q[1].JQL != vol.OpenJQL ||
				q[0].Approximate != approximate || q[1].Approximate != approximate {
				t.Errorf("ticket volume provenance queries %+v", q)
			}
			var rem evidence.SecurityRemediation
			mustDecode(t, byType[string(evidence.TypeSecurityRemediation)], &rem)
			if rem.Empty || rem.Sampled != int64(len(fx.resolved))+1 || len(rem.Priorities) != 5 {
				t.Errorf("remediation %+v", rem)
			}
			for _, q := range byType[string(evidence.TypeSecurityRemediation)][0].Provenance.Queries {
				isCount := q.Purpose == evidence.PurposeRemediationResolvedCount || q.Purpose == evidence.PurposeRemediationOpenPastSLA
				if q.Approximate != (isCount && approximate) {
					t.Errorf("remediation query %s approximate=%t on %s", q.Purpose, q.Approximate, tc.flavor)
				}
			}
			var sample evidence.SecurityTicketSample
			mustDecode(t, byType[string(evidence.TypeSecurityTicketSample)], &sample)
			if !slices.Equal(sample.Keys, fx.resolved) || sample.Requested != 25 || sample.Empty || sample.WindowSeconds != 30*24*3600 {
				t.Errorf("sample %+v, want keys %v", sample, fx.resolved)
			}
			tickets := byType[string(evidence.TypeResolvedSecurityTicket)]
			if len(tickets) != len(fx.resolved) {
				t.Fatalf("%d resolved ticket rows", len(tickets))
			}
			for i, row := range tickets {
				var tk evidence.ResolvedSecurityTicket
				if err := json.Unmarshal(row.Payload, &tk); err != nil {
					t.Fatal(err)
				}
				if tk.Key != fx.resolved[i] || row.Subject != tk.Key || tk.Resolution != "Done" || tk.Priority != "High" ||
					tk.Assignee != "Site Admin" || tk.Link != srv.URL+"/browse/"+tk.Key || !strings.HasPrefix(tk.Summary, "Patch CVE-2026-") {
					t.Errorf("ticket %+v", tk)
				}
			}

			if n := h.count(`SELECT count(*) FROM evidence_observation_spans WHERE first_run_id = $1 AND last_run_id = $1
				AND observations = 1 AND counts_as_evidence`, res.ConnectorRunID); n != wantItems {
				t.Errorf("%d observations counting as evidence, want %d", n, wantItems)
			}
			if n := h.count(`SELECT count(*) FROM connections WHERE id = $1 AND last_sync_at IS NOT NULL AND last_success_at = last_sync_at AND last_error IS NULL`, ref.ConnectionID); n != 1 {
				t.Error("connection sync timestamps not recorded")
			}
			if n := h.count(`SELECT count(*) FROM audit_log WHERE target_id = $1 AND action = 'connection.sync'
				AND metadata->>'outcome' = 'success' AND (metadata->>'new_evidence')::int = $2`, ref.ConnectionID.String(), wantItems); n != 1 {
				t.Errorf("%d connection.sync audit rows", n)
			}
			if v := counterValue(t, h.reg, "jiraconnect_evidence_syncs_total", "result", "success"); v != 1 {
				t.Errorf("sync counter %v", v)
			}
		})
	}
}

func mustDecode(t *testing.T, rows []evidenceRow, dst any) {
	t.Helper()
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	if err := json.Unmarshal(rows[0].Payload, dst); err != nil {
		t.Fatal(err)
	}
}

func TestSameContentTwiceIsOneRowTwoObservations(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	fx := seedFixture(t, srv)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	items := fx.items()

	first, err := h.sync(ref, 1)
	if err != nil {
		t.Fatal(err)
	}
	second, err := h.sync(ref, 2)
	if err != nil {
		t.Fatal(err)
	}
	if first.ConnectorRunID == second.ConnectorRunID || second.NewEvidence != 0 || second.Observed != items {
		t.Fatalf("second sync %+v (first %+v)", second, first)
	}
	if n := len(h.evidenceOf(ref.ConnectionID)); n != items {
		t.Fatalf("%d evidence rows after two identical syncs, want %d", n, items)
	}
	if n := h.count(`SELECT coalesce(sum(o.observations), 0) FROM evidence_observation_spans o JOIN evidence e ON e.id = o.evidence_id
		WHERE e.connection_id = $1`, ref.ConnectionID); n != 2*items {
		t.Fatalf("%d observations, want %d", n, 2*items)
	}
	// Every evidence row was observed by both runs, in one span: the second sync extended it.
	if n := h.count(`SELECT count(*) FROM evidence_observation_spans o JOIN evidence e ON e.id = o.evidence_id
		WHERE e.connection_id = $1 AND o.first_run_id = $2 AND o.last_run_id = $3 AND o.observations = 2`,
		ref.ConnectionID, first.ConnectorRunID, second.ConnectorRunID); n != items {
		t.Fatalf("%d spans extended by the second run, want %d", n, items)
	}
	if n := h.count(`SELECT count(*) FROM evidence_observation_spans o JOIN evidence e ON e.id = o.evidence_id WHERE e.connection_id = $1`, ref.ConnectionID); n != items {
		t.Fatalf("%d spans for %d rows observed twice in a row: unchanged evidence must not add rows", n, items)
	}

	// Re-running seq 2 (a Temporal retry after the result was lost) replays the finished run:
	// no Jira call, no new observation, the same answer.
	srv.ResetRequests()
	again, err := h.sync(ref, 2)
	if err != nil {
		t.Fatal(err)
	}
	if again.ConnectorRunID != second.ConnectorRunID || again.Observed != second.Observed || again.Outcome != second.Outcome || jiraRequests(srv) != 0 {
		t.Fatalf("replay %+v vs %+v, %d requests", again, second, jiraRequests(srv))
	}
	if n := h.count(`SELECT coalesce(sum(observations), 0) FROM evidence_observation_spans WHERE last_run_id = $1`, second.ConnectorRunID); n != 2*items {
		t.Fatalf("replay added observations: %d, want %d", n, 2*items)
	}

	// A new project changes the inventory only: exactly one new row, of that type.
	if _, err := srv.AddProject(jirasim.ProjectSpec{Key: "NEW"}); err != nil {
		t.Fatal(err)
	}
	third, err := h.sync(ref, 3)
	if err != nil {
		t.Fatal(err)
	}
	if third.NewEvidence != 1 {
		t.Fatalf("after adding a project: %d new evidence rows, want 1", third.NewEvidence)
	}
	if n := h.count(`SELECT count(*) FROM evidence WHERE connection_id = $1 AND type = $2`, ref.ConnectionID, evidence.TypeProjectInventory); n != 2 {
		t.Fatalf("%d project inventory rows", n)
	}

	// A newly resolved security ticket changes the volume, the sample and the remediation figures,
	// and adds the ticket.
	if _, err := srv.AddIssue(jirasim.IssueSpec{Project: "SEC", IssueType: "Bug", Summary: "Rotate keys", Labels: []string{"security"},
		Status: "Done", Resolution: "Done", Created: srv.Now().Add(-48 * time.Hour), Resolved: srv.Now().Add(-time.Hour), Silent: true}); err != nil {
		t.Fatal(err)
	}
	fourth, err := h.sync(ref, 4)
	if err != nil {
		t.Fatal(err)
	}
	if fourth.NewEvidence != 4 || fourth.Observed != items+1 {
		t.Fatalf("after a new resolved ticket: %+v, want 4 new rows and %d observed", fourth, items+1)
	}
}

func TestSyncCallCountDoesNotGrowWithSiteSize(t *testing.T) {
	h := newHarness(t)
	calls := map[string]int{}
	for _, size := range []struct {
		name             string
		projects, issues int
	}{{"small", 3, 60}, {"large", 400, 40000}} {
		srv := startSim(t, jirasim.Cloud, h.log)
		if _, err := srv.Seed(11, jirasim.SeedSpec{Projects: size.projects, Issues: size.issues, SecurityShare: 0.3, ResolvedRecentShare: 0.5}); err != nil {
			t.Fatal(err)
		}
		ref := h.connect(connections.KindCloudToken, srv, nil)
		srv.ResetRequests()
		res, err := h.sync(ref, 1)
		if err != nil {
			t.Fatal(err)
		}
		calls[size.name] = res.JiraCalls
		if got := jiraRequests(srv); got != res.JiraCalls {
			t.Errorf("%s: result says %d calls, simulator served %d", size.name, res.JiraCalls, got)
		}
		var vol evidence.TicketVolume
		mustDecode(t, filterType(h.evidenceOf(ref.ConnectionID), evidence.TypeTicketVolume), &vol)
		if vol.TotalCount != int64(size.issues) {
			t.Errorf("%s: total %d, want %d", size.name, vol.TotalCount, size.issues)
		}
		if n := len(filterType(h.evidenceOf(ref.ConnectionID), evidence.TypeResolvedSecurityTicket)); n > 25 || (size.name == "large" && n != 25) {
			t.Errorf("%s: %d sampled tickets (sample size 25)", size.name, n)
		}
	}
	if calls["small"] != defaultSyncCalls || calls["large"] != defaultSyncCalls {
		t.Fatalf("jira calls per sync: %v, want %d for both sizes", calls, defaultSyncCalls)
	}
}

func filterType(rows []evidenceRow, typ evidence.Type) []evidenceRow {
	var out []evidenceRow
	for _, r := range rows {
		if r.Type == string(typ) {
			out = append(out, r)
		}
	}
	return out
}

func TestSyncErrorTypes(t *testing.T) {
	t.Run("rejected API token is reauth_required", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		seedFixture(t, srv)
		bogus := "bogus-api-token-" + uuid.NewString()
		h.secrets = append(h.secrets, bogus)
		ref := h.store(connections.KindCloudToken, srv,
			connections.Credentials{Kind: connections.KindCloudToken, Email: adminEmail, APIToken: jira.NewSecret(bogus)}, nil, nil)
		_, err := h.sync(ref, 1)
		ae := appError(t, err)
		if ae.Type() != failure.TypeReauthRequired || !ae.NonRetryable() {
			t.Fatalf("%s nonretryable=%t: %v", ae.Type(), ae.NonRetryable(), err)
		}
		h.assertAttemptError(ref, failure.TypeReauthRequired, 1)
	})

	t.Run("invalid_grant on refresh is reauth_required", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		seedFixture(t, srv)
		ref := h.connect(connections.KindCloudOAuth, srv, nil)
		srv.RevokeOAuthGrants(adminEmail)
		srv.ExpireAccessTokens()
		srv.ResetRequests()
		_, err := h.sync(ref, 1)
		ae := appError(t, err)
		if ae.Type() != failure.TypeReauthRequired || !ae.NonRetryable() {
			t.Fatalf("%s nonretryable=%t: %v", ae.Type(), ae.NonRetryable(), err)
		}
		if !strings.Contains(ae.Error(), "invalid_grant") {
			t.Errorf("error does not name invalid_grant: %v", ae)
		}
		// The stored access token has not expired by our clock, so one call is made; its 401 leads
		// to the refresh that reports invalid_grant, and nothing more is called.
		if n := jiraRequests(srv); n != 1 {
			t.Errorf("%d REST calls with a dead grant, want 1", n)
		}
		if n := srv.OperationCount(jirasim.OpToken); n != 1 {
			t.Errorf("%d token requests, want exactly one refresh attempt", n)
		}
	})

	t.Run("403 is config", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		seedFixture(t, srv)
		ref := h.connect(connections.KindCloudToken, srv, nil)
		mustFault(t, srv, "GET /rest/api/3/project/search", jirasim.Fault{ErrorRate: 1, ErrorStatus: http.StatusForbidden})
		srv.ResetRequests()
		_, err := h.sync(ref, 1)
		ae := appError(t, err)
		if ae.Type() != failure.TypeConfig || !ae.NonRetryable() {
			t.Fatalf("%s nonretryable=%t: %v", ae.Type(), ae.NonRetryable(), err)
		}
		if n := jiraRequests(srv); n != 1 {
			t.Errorf("%d requests after a 403, want 1 (the sync stops)", n)
		}
		h.assertAttemptError(ref, failure.TypeConfig, 1)
	})

	t.Run("invalid JQL (400) is config", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.DataCenter, h.log)
		seedFixture(t, srv)
		cfg := connections.DefaultConfig()
		cfg.ResolvedJQL = "labels = security AND resolved >="
		ref := h.connect(connections.KindDataCenterPAT, srv, &cfg)
		_, err := h.sync(ref, 1)
		ae := appError(t, err)
		if ae.Type() != failure.TypeConfig || !ae.NonRetryable() || !strings.Contains(ae.Error(), "400") {
			t.Fatalf("%s nonretryable=%t: %v", ae.Type(), ae.NonRetryable(), err)
		}
		h.assertAttemptError(ref, failure.TypeConfig, 4)
		if n := h.count(`SELECT count(*) FROM evidence WHERE connection_id = $1`, ref.ConnectionID); n != 0 {
			t.Errorf("%d evidence rows written by a failed sync", n)
		}
	})

	t.Run("429 is rate_limited with Retry-After", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		seedFixture(t, srv)
		ref := h.connect(connections.KindCloudToken, srv, nil)
		mustFault(t, srv, "POST /rest/api/3/search/approximate-count", jirasim.Fault{RateLimit: &jirasim.RateLimit{Rate: 0.001, Burst: 0, RetryAfter: 7}})
		_, err := h.sync(ref, 1)
		ae := appError(t, err)
		if ae.Type() != failure.TypeRateLimited || ae.NonRetryable() {
			t.Fatalf("%s nonretryable=%t: %v", ae.Type(), ae.NonRetryable(), err)
		}
		if d := ae.NextRetryDelay(); d < 7*time.Second || d > 9*time.Second {
			t.Fatalf("next retry delay %s, want Retry-After 7s plus at most 2s jitter", d)
		}
		h.assertAttemptError(ref, failure.TypeRateLimited, 2)
	})

	t.Run("5xx is transient and recorded on the run", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		seedFixture(t, srv)
		ref := h.connect(connections.KindCloudToken, srv, nil)
		mustFault(t, srv, "POST /rest/api/3/search/jql", jirasim.Fault{ErrorRate: 1, ErrorStatus: http.StatusBadGateway})
		_, err := h.sync(ref, 1)
		ae := appError(t, err)
		if ae.Type() != failure.TypeTransient || ae.NonRetryable() {
			t.Fatalf("%s nonretryable=%t: %v", ae.Type(), ae.NonRetryable(), err)
		}
		r := h.assertAttemptError(ref, failure.TypeTransient, 4)
		if !strings.Contains(*r.Error, "502") {
			t.Errorf("run error %q does not show the status", *r.Error)
		}
		// The next attempt (Temporal's retry) reuses the run and finishes it.
		srv.ClearFaults()
		res, err := h.sync(ref, 1)
		if err != nil {
			t.Fatal(err)
		}
		runs := h.runs(ref.ConnectionID)
		if len(runs) != 1 || runs[0].ID != res.ConnectorRunID || runs[0].Outcome != "success" || runs[0].Attempts != 2 ||
			runs[0].JiraCalls != 4+defaultSyncCalls || runs[0].Error != nil {
			t.Fatalf("after the retry: %+v", runs)
		}
	})

	t.Run("malformed answers everywhere are transient", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		seedFixture(t, srv)
		ref := h.connect(connections.KindCloudToken, srv, nil)
		mustFault(t, srv, "* /rest/api/3/**", jirasim.Fault{MalformedBody: true})
		_, err := h.sync(ref, 1)
		ae := appError(t, err)
		if ae.Type() != failure.TypeTransient || ae.NonRetryable() {
			t.Fatalf("%s nonretryable=%t: %v", ae.Type(), ae.NonRetryable(), err)
		}
		// Every part's first call answers malformed (the remediation stops at its first): 4 + 1.
		r := h.assertAttemptError(ref, failure.TypeTransient, 5)
		if !strings.Contains(*r.Error, "malformed_response") {
			t.Errorf("run error %q does not name the malformed response", *r.Error)
		}
		if n := h.count(`SELECT count(*) FROM evidence WHERE connection_id = $1`, ref.ConnectionID); n != 0 {
			t.Errorf("%d evidence rows from malformed answers", n)
		}
	})
}

// assertAttemptError checks that a failed attempt left its error on the still-running run.
func (h *harness) assertAttemptError(ref activities.ConnectionRef, errType string, calls int) runRow {
	h.t.Helper()
	runs := h.runs(ref.ConnectionID)
	if len(runs) != 1 {
		h.t.Fatalf("%d runs", len(runs))
	}
	r := runs[0]
	if r.Outcome != "running" || r.ErrorKind == nil || *r.ErrorKind != errType || r.Error == nil || *r.Error == "" || r.JiraCalls != calls {
		h.t.Fatalf("run %+v (error %v), want running with %s error and %d calls", r, deref(r.Error), errType, calls)
	}
	return r
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func mustFault(t *testing.T, srv *jirasim.Server, route string, f jirasim.Fault) {
	t.Helper()
	if err := srv.SetFault(route, f); err != nil {
		t.Fatal(err)
	}
}

func TestMalformedPartIsNoDataForThatTypeOnly(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	fx := seedFixture(t, srv)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	mustFault(t, srv, "GET /rest/api/3/project/search", jirasim.Fault{MalformedBody: true})
	res, err := h.sync(ref, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != activities.OutcomePartial || res.JiraCalls != defaultSyncCalls || res.Observed != fx.items()-1 {
		t.Fatalf("result %+v, want partial with %d calls and no project inventory", res, defaultSyncCalls)
	}
	if n := len(filterType(h.evidenceOf(ref.ConnectionID), evidence.TypeProjectInventory)); n != 0 {
		t.Fatalf("%d project inventory rows from a malformed answer", n)
	}
	r := h.runs(ref.ConnectionID)[0]
	if r.Outcome != "partial" || r.Error == nil || !strings.Contains(*r.Error, string(evidence.TypeProjectInventory)) ||
		!strings.Contains(*r.Error, "malformed_response") {
		t.Fatalf("run %+v error %s", r, deref(r.Error))
	}
	var report struct {
		Types []evidence.TypeReport `json:"types"`
	}
	var raw []byte
	if err := h.owner().QueryRow(context.Background(), `SELECT report FROM connector_runs WHERE id = $1`, r.ID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &report); err != nil {
		t.Fatal(err)
	}
	for _, tr := range report.Types {
		wantComplete := tr.Type != evidence.TypeProjectInventory
		if (tr.Outcome == evidence.OutcomeComplete) != wantComplete {
			t.Errorf("report entry %+v", tr)
		}
	}
	// A partial sync still counts as the connection answering.
	if n := h.count(`SELECT count(*) FROM connections WHERE id = $1 AND last_success_at IS NOT NULL`, ref.ConnectionID); n != 1 {
		t.Error("partial sync did not record last_success_at")
	}
}

func TestEmptySiteIsNoData(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	res, err := h.sync(ref, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != activities.OutcomeNoData || res.Observed != 4 {
		t.Fatalf("result %+v, want no_data with 4 empty observations", res)
	}
	if n := h.count(`SELECT count(*) FROM evidence_observation_spans WHERE last_run_id = $1 AND counts_as_evidence`, res.ConnectorRunID); n != 0 {
		t.Fatalf("%d observations of an empty site count as evidence", n)
	}
	if n := h.count(`SELECT count(*) FROM connections WHERE id = $1 AND last_sync_at IS NOT NULL AND last_success_at IS NULL`, ref.ConnectionID); n != 1 {
		t.Fatal("no_data must record last_sync_at but not last_success_at")
	}
}

func TestRevokedConnectionMakesNoJiraCall(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	seedFixture(t, srv)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	if _, err := h.env().ExecuteActivity(activities.NameRevokeCleanup, activities.RevokeInput{ConnectionRef: ref, ActorType: "api_key", ActorID: "k1"}); err != nil {
		t.Fatal(err)
	}
	srv.ResetRequests()
	_, err := h.sync(ref, 1)
	ae := appError(t, err)
	if ae.Type() != failure.TypeRevoked || !ae.NonRetryable() {
		t.Fatalf("%s nonretryable=%t: %v", ae.Type(), ae.NonRetryable(), err)
	}
	if reqs := srv.Requests(); len(reqs) != 0 {
		t.Fatalf("the simulator saw %d requests for a revoked connection", len(reqs))
	}
}

// revokingTransport revokes the connection after the first Jira response, the way an API revoke
// lands while a sync is in flight.
type revokingTransport struct {
	base   http.RoundTripper
	revoke func()
	calls  atomic.Int32
}

func (rt *revokingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := rt.base.RoundTrip(r)
	if rt.calls.Add(1) == 1 {
		rt.revoke()
	}
	return resp, err
}

func TestRevokeDuringSyncStopsBeforeTheNextCall(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	seedFixture(t, srv)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	rt := &revokingTransport{base: http.DefaultTransport, revoke: func() {
		if err := h.acts.RevokeCleanup(context.Background(), activities.RevokeInput{ConnectionRef: ref, ActorType: "system"}); err != nil {
			t.Error(err)
		}
	}}
	h.conns.HTTPClient = &http.Client{Transport: rt}
	srv.ResetRequests()
	_, err := h.sync(ref, 1)
	ae := appError(t, err)
	if ae.Type() != failure.TypeRevoked {
		t.Fatalf("%s: %v", ae.Type(), err)
	}
	if n := jiraRequests(srv); n != 1 {
		t.Fatalf("%d Jira requests, want 1: the revoke must stop the sync before its next call", n)
	}
	if n := h.count(`SELECT count(*) FROM evidence WHERE connection_id = $1`, ref.ConnectionID); n != 0 {
		t.Fatalf("%d evidence rows written after revoke", n)
	}
}

func TestRecordSyncFailureIsIdempotent(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	seedFixture(t, srv)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	mustFault(t, srv, "GET /rest/api/3/project/search", jirasim.Fault{ErrorRate: 1, ErrorStatus: http.StatusInternalServerError})
	if _, err := h.sync(ref, 1); err == nil {
		t.Fatal("sync succeeded against a failing site")
	}
	sf := activities.SyncFailure{ConnectionRef: ref, Seq: 1, WorkflowID: "jira-connection/" + ref.ConnectionID.String(), RunID: "run-1",
		ErrorType: failure.TypeTransient, Message: "retries exhausted: jira project.count: 500 server_error"}
	env := h.env()
	for range 2 {
		if _, err := env.ExecuteActivity(activities.NameRecordSyncFailure, sf); err != nil {
			t.Fatal(err)
		}
	}
	runs := h.runs(ref.ConnectionID)
	if len(runs) != 1 || runs[0].Outcome != "failed" || runs[0].FinishedAt == nil || deref(runs[0].ErrorKind) != failure.TypeTransient ||
		!strings.Contains(deref(runs[0].Error), "retries exhausted") {
		t.Fatalf("runs %+v", runs)
	}
	if n := h.count(`SELECT count(*) FROM audit_log WHERE target_id = $1 AND action = 'connection.sync_failed'`, ref.ConnectionID.String()); n != 1 {
		t.Fatalf("%d sync_failed audit rows, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM connections WHERE id = $1 AND last_error_kind = 'transient' AND last_error LIKE 'retries exhausted%'`, ref.ConnectionID); n != 1 {
		t.Fatal("connection last_error not recorded")
	}

	// A failure for a seq no attempt ever started still leaves a failed run.
	sf.Seq = 9
	sf.Message = ""
	if _, err := env.ExecuteActivity(activities.NameRecordSyncFailure, sf); err != nil {
		t.Fatal(err)
	}
	if n := h.count(`SELECT count(*) FROM connector_runs WHERE connection_id = $1 AND outcome = 'failed'`, ref.ConnectionID); n != 2 {
		t.Fatalf("%d failed runs, want 2", n)
	}

	// A finished run is never turned into a failure.
	srv.ClearFaults()
	res, err := h.sync(ref, 10)
	if err != nil {
		t.Fatal(err)
	}
	sf.Seq = 10
	if _, err := env.ExecuteActivity(activities.NameRecordSyncFailure, sf); err != nil {
		t.Fatal(err)
	}
	if n := h.count(`SELECT count(*) FROM connector_runs WHERE id = $1 AND outcome = 'success'`, res.ConnectorRunID); n != 1 {
		t.Fatal("RecordSyncFailure overwrote a successful run")
	}
}

func TestSyncRejectsBadInput(t *testing.T) {
	h := newHarness(t)
	_, err := h.sync(activities.ConnectionRef{OrgID: h.org}, 1)
	if ae := appError(t, err); ae.Type() != failure.TypeInvalidInput || !ae.NonRetryable() {
		t.Fatalf("%v", err)
	}
	// A connection of another org is not found (config), and no run is recorded for it.
	other := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	ref := other.connect(connections.KindCloudToken, srv, nil)
	h.secrets = append(h.secrets, other.secrets...)
	_, err = h.sync(activities.ConnectionRef{OrgID: h.org, ConnectionID: ref.ConnectionID}, 1)
	if ae := appError(t, err); ae.Type() != failure.TypeConfig || !ae.NonRetryable() {
		t.Fatalf("%v", err)
	}
	if n := h.count(`SELECT count(*) FROM connector_runs WHERE connection_id = $1`, ref.ConnectionID); n != 0 {
		t.Fatalf("%d runs recorded across orgs", n)
	}
}

// TestSyncHeartbeats: an attempt heartbeats (each heartbeat is a write on the Temporal server)
// only once it has run for heartbeatGrace; a quick sync sends none, a slow one reports its steps.
func TestSyncHeartbeats(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	seedFixture(t, srv)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	run := func(seq int64) []string {
		env := h.env()
		var mu sync.Mutex
		var steps []string
		env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
			var step string
			if err := details.Get(&step); err == nil {
				mu.Lock()
				steps = append(steps, step)
				mu.Unlock()
			}
		})
		in := activities.SyncInput{ConnectionRef: ref, Seq: seq, Trigger: "sync_now", WorkflowID: "wf", RunID: "r"}
		if _, err := env.ExecuteActivity(activities.NameSyncEvidence, in); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(steps)
	}
	if steps := run(1); len(steps) != 0 {
		t.Fatalf("a quick sync heartbeated: %v", steps)
	}
	// Four calls of 600 ms each: the attempt passes the grace period after its second call.
	if err := srv.SetFault("* /rest/api/3/**", jirasim.Fault{Latency: 600 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	steps := run(2)
	// The SDK batches heartbeats, so only the first is guaranteed to reach the listener; it
	// names a step after the grace period, never the start of the attempt.
	if len(steps) == 0 || steps[0] == "load connection" {
		t.Fatalf("slow sync heartbeats %v", steps)
	}
}

// Jira Cloud may answer search/jql with fewer issues than maxResults and a nextPageToken. The
// sample follows the token until it has sample_size tickets; when its page bound runs out first,
// the sample is recorded as it was read, marked incomplete and not counted as evidence, and the
// sync is partial with the reason.
func TestResolvedSampleFollowsShortPages(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	fx := seedFixture(t, srv)
	now := srv.Now()
	for i := range 12 {
		if _, err := srv.AddIssue(jirasim.IssueSpec{Project: "SEC", IssueType: "Bug", Summary: fmt.Sprintf("Rotate key %02d", i),
			Labels: []string{"security"}, Status: "Done", Resolution: "Done", Priority: "High",
			Created: now.AddDate(0, 0, -4), Resolved: now.AddDate(0, 0, -2), Silent: true}); err != nil {
			t.Fatal(err)
		}
	}
	resolved := len(fx.resolved) + 12
	// One rendered issue per page: every page is short and carries a token.
	srv.SetSearchPageBudget(1)

	cfg := connections.DefaultConfig()
	cfg.SampleSize = 4
	full := h.connect(connections.KindCloudToken, srv, &cfg)
	res, err := h.sync(full, 1)
	require.NoError(t, err)
	assert.Equal(t, activities.OutcomeSuccess, res.Outcome, "four one-issue pages fill a sample of four")
	rows := h.evidenceOf(full.ConnectionID)
	var sample evidence.SecurityTicketSample
	for _, r := range rows {
		if r.Type == string(evidence.TypeSecurityTicketSample) {
			require.NoError(t, json.Unmarshal(r.Payload, &sample))
		}
	}
	assert.EqualValues(t, 4, sample.Returned)
	assert.Empty(t, sample.Incomplete)

	cfg.SampleSize = 25
	bounded := h.connect(connections.KindCloudToken, srv, &cfg)
	res, err = h.sync(bounded, 1)
	require.NoError(t, err)
	assert.Equal(t, activities.OutcomePartial, res.Outcome, "a sample cut short by the page bound is not complete evidence")
	for _, r := range h.evidenceOf(bounded.ConnectionID) {
		if r.Type == string(evidence.TypeSecurityTicketSample) {
			require.NoError(t, json.Unmarshal(r.Payload, &sample))
		}
	}
	assert.Less(t, int(sample.Returned), min(resolved, 25), "the bound stops the sample before Jira's last page")
	assert.Contains(t, sample.Incomplete, "pages")
	runs := h.runs(bounded.ConnectionID)
	require.Len(t, runs, 1)
	require.NotNil(t, runs[0].Error)
	assert.Contains(t, *runs[0].Error, "incomplete")
	assert.Zero(t, h.count(`SELECT count(*) FROM evidence_observation_spans o JOIN evidence e ON e.id = o.evidence_id
		WHERE e.connection_id = $1 AND e.type = 'jira.security_ticket_sample' AND o.counts_as_evidence`, bounded.ConnectionID),
		"an incomplete sample must not count as fresh evidence")
}

// Each sync that observes unchanged evidence within the stale threshold extends the evidence's
// span instead of adding a row; a gap longer than the threshold starts a new span, so the spans
// say exactly when the evidence was continuously fresh. A year of daily syncs of an unchanged
// site keeps one span per evidence row.
func TestObservationsAreSpansOfContinuousFreshness(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	seedFixture(t, srv)
	// A sample not bounded by a relative date, so that what the site holds (and so the evidence)
	// stays the same while the clocks move through a year; the remediation window rolls by
	// design, so its filter selects nothing here (an empty item, the same every day).
	cfg := connections.DefaultConfig()
	cfg.ResolvedJQL = `labels = "security" AND statusCategory = Done AND resolution IS NOT EMPTY ORDER BY resolved DESC`
	cfg.Remediation.JQL = `labels = "not-on-this-site"`
	ref := h.connect(connections.KindCloudToken, srv, &cfg)
	now := srv.Now()
	clock := func() time.Time { return now }
	acts, err := activities.New(activities.Deps{DB: h.db, Connections: h.conns, Log: h.log, Version: "test-1.2.3", Registerer: prometheus.NewRegistry(), Now: clock})
	require.NoError(t, err)
	sync := func(seq int64) activities.SyncResult {
		t.Helper()
		res, err := acts.SyncEvidence(context.Background(), activities.SyncInput{ConnectionRef: ref, Seq: seq, Trigger: "schedule",
			WorkflowID: "jira-connection/" + ref.ConnectionID.String(), RunID: "run-1"})
		require.NoError(t, err)
		return res
	}
	spans := func() (rows, observations int) {
		require.NoError(t, h.owner().QueryRow(context.Background(), `SELECT count(*), coalesce(sum(observations), 0)
			FROM evidence_observation_spans o JOIN evidence e ON e.id = o.evidence_id WHERE e.connection_id = $1`, ref.ConnectionID).Scan(&rows, &observations))
		return rows, observations
	}
	first := sync(1)
	items := first.Observed
	for day := int64(2); day <= 365; day++ {
		now = now.Add(24 * time.Hour)
		srv.AdvanceClock(24 * time.Hour)
		sync(day)
	}
	rows, obs := spans()
	assert.Equal(t, items, rows, "a year of daily syncs of unchanged evidence: one span per evidence row")
	assert.Equal(t, 365*items, obs, "every observation is counted")

	// Three days without a sync (longer than the 48h threshold): the next observation opens new spans.
	now = now.Add(72 * time.Hour)
	srv.AdvanceClock(72 * time.Hour)
	sync(366)
	rows, obs = spans()
	assert.Equal(t, 2*items, rows)
	assert.Equal(t, 366*items, obs)
	var gap time.Duration
	var longest pgtype.Interval
	require.NoError(t, h.owner().QueryRow(context.Background(), `SELECT max(longest_gap) FROM evidence_observation_spans o
		JOIN evidence e ON e.id = o.evidence_id WHERE e.connection_id = $1`, ref.ConnectionID).Scan(&longest))
	gap = time.Duration(longest.Microseconds)*time.Microsecond + time.Duration(longest.Days)*24*time.Hour
	assert.Equal(t, 24*time.Hour, gap, "the longest gap inside a span is a day")

	// Replaying a finished sync (a retry whose answer was lost) adds nothing.
	sync(366)
	rows2, obs2 := spans()
	assert.Equal(t, rows, rows2)
	assert.Equal(t, obs, obs2)
}
