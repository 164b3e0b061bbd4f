package activities_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/evidence"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

const day = 24 * time.Hour

// remediationFixture seeds security tickets with known creation and resolution times and
// priorities, plus tickets the remediation must leave out, and returns the key of the oldest open
// security ticket. With the default configuration (90-day window; SLAs Highest 7d, High 30d,
// Medium 90d, Low 180d, Lowest 365d) the figures are:
//
//	Highest: resolved in 2h, 12h, 10d → median 12h, p90 10d, 2 within SLA; open 8d and 6d → 1 past SLA
//	High:    resolved in 1d, 2d, 3d, 40d → median 2d, p90 40d, 3 within SLA; open 31d and 400d → 2 past
//	Medium:  none resolved in the window (one 100 days ago); open 10d → none past
//	Low:     resolved in 200d → median = p90 = 200d, 0 within SLA
//	Lowest:  nothing
//
// 8 tickets resolved in the window, all of them in the one page; the oldest open security ticket
// is the High one opened 400 days ago (an open non-security ticket is older still).
func remediationFixture(t *testing.T, srv *jirasim.Server) string {
	t.Helper()
	_, err := srv.AddProject(jirasim.ProjectSpec{Key: "SEC"})
	require.NoError(t, err)
	_, err = srv.AddProject(jirasim.ProjectSpec{Key: "APP"})
	require.NoError(t, err)
	now := srv.Now()
	n := 0
	add := func(project string, labels []string, priority string, created, resolved time.Duration, status string) string {
		t.Helper()
		n++
		spec := jirasim.IssueSpec{Project: project, IssueType: "Bug", Summary: fmt.Sprintf("Ticket %d", n), Labels: labels,
			Priority: priority, Created: now.Add(-created), Status: status, Silent: true}
		if resolved > 0 {
			spec.Status, spec.Resolution, spec.Resolved = "Done", "Done", now.Add(-resolved)
		}
		is, err := srv.AddIssue(spec)
		require.NoError(t, err)
		return is.Key
	}
	sec := []string{"security"}
	resolvedIn := func(priority string, ttr, ago time.Duration) { add("SEC", sec, priority, ago+ttr, ago, "") }
	resolvedIn("Highest", 2*time.Hour, 3*day)
	resolvedIn("Highest", 12*time.Hour, 4*day)
	resolvedIn("Highest", 10*day, 20*day)
	resolvedIn("High", day, day)
	resolvedIn("High", 2*day, 5*day)
	resolvedIn("High", 3*day, 60*day)
	resolvedIn("High", 40*day, day)
	resolvedIn("Low", 200*day, 10*day)
	resolvedIn("Medium", day, 100*day)         // outside the window
	add("APP", nil, "Low", 15*day, 10*day, "") // not a security ticket
	add("SEC", sec, "Highest", 8*day, 0, "")
	add("SEC", sec, "Highest", 6*day, 0, "In Progress")
	add("SEC", sec, "High", 31*day, 0, "")
	oldest := add("SEC", sec, "High", 400*day, 0, "")
	add("SEC", sec, "Medium", 10*day, 0, "")
	add("APP", nil, "High", 500*day, 0, "") // older, but not a security ticket
	return oldest
}

func i64(d time.Duration) *int64 { n := int64(d / time.Second); return &n }

func remediationRows(h *harness, ref activities.ConnectionRef) []evidenceRow {
	return filterType(h.evidenceOf(ref.ConnectionID), evidence.TypeSecurityRemediation)
}

func TestRemediationEvidenceFromTheSimulator(t *testing.T) {
	for _, tc := range []struct {
		kind   connections.Kind
		flavor jirasim.Flavor
	}{{connections.KindCloudToken, jirasim.Cloud}, {connections.KindDataCenterPAT, jirasim.DataCenter}} {
		t.Run(string(tc.flavor), func(t *testing.T) {
			h := newHarness(t)
			srv := startSim(t, tc.flavor, h.log)
			oldest := remediationFixture(t, srv)
			ref := h.connect(tc.kind, srv, nil)
			srv.ResetRequests()
			res, err := h.sync(ref, 1)
			require.NoError(t, err)
			assert.Equal(t, activities.OutcomeSuccess, res.Outcome)
			assert.Equal(t, defaultSyncCalls, res.JiraCalls)
			assert.Equal(t, defaultSyncCalls, jiraRequests(srv))

			rows := remediationRows(h, ref)
			require.Len(t, rows, 1)
			var got evidence.SecurityRemediation
			require.NoError(t, json.Unmarshal(rows[0].Payload, &got))
			oldestIssue, ok := srv.Issue(oldest)
			require.True(t, ok)
			assert.Equal(t, evidence.SecurityRemediation{
				JQL: `labels = "security"`, WindowSeconds: 90 * 24 * 3600, Resolved: 8, Sampled: 8, SampleComplete: true,
				Priorities: []evidence.PriorityRemediation{
					{Priority: "Highest", SLASeconds: 7 * 24 * 3600, Sampled: 3, WithinSLA: 2, MedianSeconds: i64(12 * time.Hour), P90Seconds: i64(10 * day), OpenPastSLA: 1},
					{Priority: "High", SLASeconds: 30 * 24 * 3600, Sampled: 4, WithinSLA: 3, MedianSeconds: i64(2 * day), P90Seconds: i64(40 * day), OpenPastSLA: 2},
					{Priority: "Medium", SLASeconds: 90 * 24 * 3600},
					{Priority: "Low", SLASeconds: 180 * 24 * 3600, Sampled: 1, MedianSeconds: i64(200 * day), P90Seconds: i64(200 * day)},
					{Priority: "Lowest", SLASeconds: 365 * 24 * 3600},
				},
				OldestOpen: &evidence.OpenSecurityTicket{Key: oldest, Priority: "High", Created: evidence.NewTimestamp(oldestIssue.Created)},
			}, got)

			// Provenance: every query in call order, built around the configured filter; the
			// counts are estimates on Cloud and exact on Data Center.
			q := rows[0].Provenance.Queries
			require.Len(t, q, 8)
			assert.Equal(t, evidence.PurposeRemediationResolvedCount, q[0].Purpose)
			assert.Equal(t, `(labels = "security") AND (statusCategory = "Done") AND (resolved >= -90d)`, q[0].JQL)
			assert.Equal(t, `(labels = "security") AND (statusCategory = "Done") AND (resolved >= -90d) ORDER BY resolved DESC`, q[1].JQL)
			assert.Equal(t, `(labels = "security") AND (statusCategory != "Done") AND (priority = "Highest") AND (created < -7d)`, q[2].JQL)
			assert.Equal(t, `(labels = "security") AND (statusCategory != "Done") AND (priority = "Lowest") AND (created < -365d)`, q[6].JQL)
			assert.Equal(t, `(labels = "security") AND (statusCategory != "Done") ORDER BY created ASC`, q[7].JQL)
			for i, query := range q {
				isCount := query.Purpose == evidence.PurposeRemediationResolvedCount || query.Purpose == evidence.PurposeRemediationOpenPastSLA
				assert.Equal(t, isCount && tc.flavor == jirasim.Cloud, query.Approximate, "query %d %s", i, query.Purpose)
			}
			assert.Equal(t, 90*day, rows[0].Provenance.WindowTo.Sub(rows[0].Provenance.WindowFrom))
			assert.Equal(t, 1, h.count(`SELECT count(*) FROM evidence_observation_spans o JOIN evidence e ON e.id = o.evidence_id
				WHERE e.connection_id = $1 AND e.type = 'jira.security_remediation' AND o.counts_as_evidence`, ref.ConnectionID))

			// The same site a sync later is the same evidence observed again.
			again, err := h.sync(ref, 2)
			require.NoError(t, err)
			assert.Zero(t, again.NewEvidence)
			assert.Len(t, remediationRows(h, ref), 1)
		})
	}
}

// A configuration of its own: another filter, window and priorities (one the site does not use,
// one SLA in hours), and a page that holds fewer tickets than the window has.
func TestRemediationConfiguration(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	remediationFixture(t, srv)
	cfg := connections.DefaultConfig()
	cfg.Remediation = connections.RemediationConfig{JQL: `project = SEC AND labels in ("security", "scanner")`, WindowDays: 30,
		SLAs: map[string]connections.Duration{"Highest": connections.Duration(36 * time.Hour), "High": connections.Duration(14 * day)}}
	require.NoError(t, cfg.Validate())
	ref := h.connect(connections.KindCloudToken, srv, &cfg)
	res, err := h.sync(ref, 1)
	require.NoError(t, err)
	assert.Equal(t, 4+3+2, res.JiraCalls, "three remediation calls and one per configured priority")
	rows := remediationRows(h, ref)
	require.Len(t, rows, 1)
	var got evidence.SecurityRemediation
	require.NoError(t, json.Unmarshal(rows[0].Payload, &got))
	// In the last 30 days: Highest 2h, 12h, 10d (resolved 3, 4, 20 days ago), High 1d, 2d, 40d
	// (resolved 1, 5, 1 days ago; the 3d one was resolved 60 days ago), Low 200d (10 days ago).
	assert.EqualValues(t, 30*24*3600, got.WindowSeconds)
	assert.EqualValues(t, 7, got.Resolved)
	assert.EqualValues(t, 7, got.Sampled)
	assert.EqualValues(t, 1, got.OtherPriorities, "the Low ticket has no configured SLA")
	require.Len(t, got.Priorities, 2)
	assert.Equal(t, evidence.PriorityRemediation{Priority: "Highest", SLASeconds: 36 * 3600, Sampled: 3, WithinSLA: 2,
		MedianSeconds: i64(12 * time.Hour), P90Seconds: i64(10 * day), OpenPastSLA: 2}, got.Priorities[0])
	assert.Equal(t, evidence.PriorityRemediation{Priority: "High", SLASeconds: 14 * 24 * 3600, Sampled: 3, WithinSLA: 2,
		MedianSeconds: i64(2 * day), P90Seconds: i64(40 * day), OpenPastSLA: 2}, got.Priorities[1])
	assert.Contains(t, rows[0].Provenance.Queries[2].JQL, `(created < -36h)`)

	// One-issue pages: the times come from the first page only, and the evidence says so.
	srv.SetSearchPageBudget(1)
	res, err = h.sync(ref, 2)
	require.NoError(t, err)
	assert.Equal(t, activities.OutcomePartial, res.Outcome, "the resolved-ticket sample (25) is cut short by its page bound")
	for _, r := range remediationRows(h, ref) {
		var p evidence.SecurityRemediation
		require.NoError(t, json.Unmarshal(r.Payload, &p))
		if p.SampleComplete {
			continue
		}
		assert.EqualValues(t, 1, p.Sampled)
		assert.EqualValues(t, 7, p.Resolved)
		return
	}
	t.Fatal("no remediation row with an incomplete sample")
}

// breakingTransport answers the requests whose body contains match with status (a body that is
// not JSON when status is 200), and passes the others on.
type breakingTransport struct {
	base   http.RoundTripper
	match  string
	status int
	times  atomic.Int32 // how many more to break; negative: every one
	hits   atomic.Int32
}

func (b *breakingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if bytes.Contains(body, []byte(b.match)) && b.times.Load() != 0 {
		b.times.Add(-1)
		b.hits.Add(1)
		resp, err := b.base.RoundTrip(r) // Jira answered; the answer is lost or mangled
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		text := "{not json"
		if b.status != http.StatusOK {
			text = `{"errorMessages":["Internal server error"],"errors":{}}`
		}
		return &http.Response{StatusCode: b.status, Status: http.StatusText(b.status), Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(text)), Request: r, ContentLength: int64(len(text))}, nil
	}
	return b.base.RoundTrip(r)
}

// Any remediation call that fails makes the type "no data" with the reason — never a zero — and
// the remaining remediation calls are not made; the other evidence types are unaffected.
func TestRemediationFailedCallIsNoData(t *testing.T) {
	t.Run("a priority the site does not have (400)", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.DataCenter, h.log)
		fx := seedFixture(t, srv)
		cfg := connections.DefaultConfig()
		cfg.Remediation.SLAs = map[string]connections.Duration{"Critical": connections.Duration(time.Hour), "High": connections.Duration(30 * day)}
		ref := h.connect(connections.KindDataCenterPAT, srv, &cfg)
		res, err := h.sync(ref, 1)
		require.NoError(t, err)
		assert.Equal(t, activities.OutcomePartial, res.Outcome)
		assert.Equal(t, 4+2+1, res.JiraCalls, "the count for Critical (shortest SLA, first) fails; no more remediation calls")
		assert.Equal(t, fx.items()-1, res.Observed, "every other evidence type is stored")
		assert.Empty(t, remediationRows(h, ref))
		r := h.runs(ref.ConnectionID)[0]
		require.NotNil(t, r.Error)
		assert.Contains(t, *r.Error, "jira.security_remediation: security remediation fetch failed")
		assert.Contains(t, *r.Error, "Critical")
		assert.Contains(t, *r.Error, "400")
	})

	t.Run("a malformed answer", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		fx := seedFixture(t, srv)
		bt := &breakingTransport{base: http.DefaultTransport, match: `priority = \"High\"`, status: http.StatusOK}
		bt.times.Store(-1)
		h.conns.HTTPClient = &http.Client{Transport: bt}
		ref := h.connect(connections.KindCloudToken, srv, nil)
		srv.ResetRequests()
		res, err := h.sync(ref, 1)
		require.NoError(t, err)
		assert.Equal(t, activities.OutcomePartial, res.Outcome)
		assert.EqualValues(t, 1, bt.hits.Load())
		assert.Equal(t, 4+2+2, res.JiraCalls, "Highest's count, then High's malformed one; Medium, Low, Lowest and the oldest are not asked")
		assert.Equal(t, fx.items()-1, res.Observed)
		assert.Empty(t, remediationRows(h, ref))
		r := h.runs(ref.ConnectionID)[0]
		require.NotNil(t, r.Error)
		assert.Contains(t, *r.Error, "jira.security_remediation: security remediation fetch failed")
		assert.Contains(t, *r.Error, "malformed_response")
		var report struct {
			Types []evidence.TypeReport `json:"types"`
		}
		var raw []byte
		require.NoError(t, h.owner().QueryRow(context.Background(), `SELECT report FROM connector_runs WHERE id = $1`, r.ID).Scan(&raw))
		require.NoError(t, json.Unmarshal(raw, &report))
		for _, tr := range report.Types {
			assert.Equal(t, tr.Type != evidence.TypeSecurityRemediation, tr.Outcome == evidence.OutcomeComplete, "%+v", tr)
		}
	})

	t.Run("a server error fails the attempt, which is retried", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		fx := seedFixture(t, srv)
		bt := &breakingTransport{base: http.DefaultTransport, match: `ORDER BY created ASC`, status: http.StatusBadGateway}
		bt.times.Store(1)
		h.conns.HTTPClient = &http.Client{Transport: bt}
		ref := h.connect(connections.KindCloudToken, srv, nil)
		_, err := h.sync(ref, 1)
		ae := appError(t, err)
		assert.Equal(t, failure.TypeTransient, ae.Type())
		assert.False(t, ae.NonRetryable())
		h.assertAttemptError(ref, failure.TypeTransient, defaultSyncCalls)
		assert.Zero(t, h.count(`SELECT count(*) FROM evidence WHERE connection_id = $1`, ref.ConnectionID), "nothing is stored by a failed attempt")

		res, err := h.sync(ref, 1)
		require.NoError(t, err)
		assert.Equal(t, activities.OutcomeSuccess, res.Outcome)
		assert.Equal(t, fx.items(), res.Observed)
		assert.Len(t, remediationRows(h, ref), 1)
	})
}
