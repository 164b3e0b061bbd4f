package activities_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/findingsync"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

func TestDrainCreatesOneIssuePerMatchingFinding(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	high := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	low := s.finding("F-2", findings.SeverityLow, findings.StatusOpen)
	s.srv.ResetRequests()

	res := s.mustDrain()
	if res.Created != 1 || res.Unchanged != 1 || res.Failed != 0 || res.Remaining != 0 || res.NextDue != nil {
		t.Fatalf("drain result %+v", res)
	}
	// One create and nothing else: no search for a fresh intent, no status read for a new issue.
	if res.JiraCalls != 1 || s.srv.OperationCount(jirasim.OpIssueCreate) != 1 || jiraRequests(s.srv) != 1 {
		t.Errorf("jira calls %d (simulator saw %v)", res.JiraCalls, s.srv.OperationCounts())
	}
	if _, ok := s.link(low); ok {
		t.Error("a low finding got a link")
	}
	if s.queueLen() != 0 {
		t.Errorf("%d queue items left", s.queueLen())
	}

	// The issue, field by field.
	is := s.mustIssue(high)
	marker := findings.IssueMarker(findings.Scope{OrgID: s.org, ConnectionID: s.ref.ConnectionID}, high)
	if is.Project != "SEC" || is.IssueType != "Vulnerability" || is.Status != "To Do" {
		t.Errorf("issue %s: project %s, type %s, status %s", is.Key, is.Project, is.IssueType, is.Status)
	}
	if !strings.HasPrefix(is.Summary, "[jiraconnect] Prompt injection via support bot F-1 ") {
		t.Errorf("summary %q", is.Summary)
	}
	wantLabels := []string{"jiraconnect", "security-finding", "OWASP_LLM01", "MITRE_ATLAS_AML_T0051", marker}
	if got, want := slices.Sorted(slices.Values(is.Labels)), slices.Sorted(slices.Values(wantLabels)); !reflect.DeepEqual(got, want) {
		t.Errorf("labels %v, want %v", got, want)
	}
	if got := is.CustomFields[s.cfg.FrameworkField]; !reflect.DeepEqual(optionValues(got), []string{"OWASP_LLM01", "MITRE_ATLAS_AML_T0051"}) {
		t.Errorf("framework field %v", got)
	}
	if got := is.CustomFields[jirasim.FieldFindingID]; got != high.String() {
		t.Errorf("finding id field %v", got)
	}
	var doc struct {
		Type    string `json:"type"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(is.DescriptionADF, &doc); err != nil || doc.Type != "doc" || doc.Version != 1 {
		t.Errorf("description is not an ADF document: %s (%v)", is.DescriptionADF, err)
	}
	adf := string(is.DescriptionADF)
	for _, want := range []string{findings.DescriptionIntro, "Severity: ", "high", "promptinject.HijackHateHumans", "scan-2026-001",
		findings.ExcerptHeading, "https://app.example.com/findings/" + high.String(), marker} {
		if !strings.Contains(adf, want) {
			t.Errorf("description lacks %q", want)
		}
	}

	l, _ := s.link(high)
	if l.IssueID == nil || *l.IssueID != is.ID || deref(l.LastJira) != "To Do" || l.LastPushed != nil || l.LastErrorKind != nil {
		t.Errorf("link %+v", l)
	}
	if n := s.audits(findingsync.ActionIssueCreated); n != 1 {
		t.Errorf("%d %s audit rows", n, findingsync.ActionIssueCreated)
	}
	runs := s.runs(s.ref.ConnectionID)
	if len(runs) != 1 || runs[0].Outcome != activities.OutcomeSuccess || runs[0].JiraCalls != 1 {
		t.Errorf("runs %+v", runs)
	}
	if len(runs) == 1 && (runs[0].FinishedAt == nil || runs[0].FinishedAt.Before(runs[0].StartedAt)) {
		t.Errorf("the push run finished before it started: %+v", runs[0])
	}

	// A finding queued again without a change costs no call; an empty queue records no run.
	s.enqueue(high)
	s.srv.ResetRequests()
	if res := s.mustDrain(); res.Unchanged != 1 || res.JiraCalls != 0 {
		t.Errorf("second drain %+v", res)
	}
	if res := s.mustDrain(); res != (activities.DrainResult{}) {
		t.Errorf("empty drain %+v", res)
	}
	if n := jiraRequests(s.srv); n != 0 || len(s.runs(s.ref.ConnectionID)) != 1 {
		t.Errorf("%d Jira requests, %d runs after drains without work", n, len(s.runs(s.ref.ConnectionID)))
	}
	if s.issuesWithMarker(high) != 1 || s.srv.IssueCount() != 1 {
		t.Errorf("%d issues", s.srv.IssueCount())
	}
}

func optionValues(v any) []string {
	raw, _ := json.Marshal(v)
	var opts []struct {
		Value string `json:"value"`
	}
	_ = json.Unmarshal(raw, &opts)
	var out []string
	for _, o := range opts {
		out = append(out, o.Value)
	}
	return out
}

func TestDrainTransitionsByStatus(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	id := s.finding("F-1", findings.SeverityCritical, findings.StatusOpen)
	s.mustDrain()
	key := s.mustIssue(id).Key

	for _, step := range []struct {
		status     findings.Status
		want, res  string
		hopsAtMost int
	}{
		// To Do → In Progress → Done: the workflow has no direct transition.
		{findings.StatusResolved, "Done", "Done", 2},
		// Done → To Do → In Progress → Won't Do.
		{findings.StatusAccepted, "Won't Do", "Won't Do", 3},
		{findings.StatusOpen, "To Do", "", 1},
		{findings.StatusTriaged, "In Progress", "", 1},
		{findings.StatusFalsePositive, "Cancelled", "Cancelled", 1},
	} {
		s.setStatus(id, step.status)
		before := s.srv.OperationCount(jirasim.OpTransitionDo)
		res := s.mustDrain()
		if res.Transitions != 1 || res.Failed != 0 || res.Delayed != 0 {
			t.Fatalf("%s: drain %+v", step.status, res)
		}
		is, _ := s.srv.Issue(key)
		if is.Status != step.want || is.Resolution != step.res {
			t.Errorf("%s: issue is %s (resolution %q), want %s (%q)", step.status, is.Status, is.Resolution, step.want, step.res)
		}
		if hops := s.srv.OperationCount(jirasim.OpTransitionDo) - before; hops < 1 || hops > step.hopsAtMost {
			t.Errorf("%s: %d transitions", step.status, hops)
		}
		l, _ := s.link(id)
		if deref(l.LastPushed) != step.want || deref(l.LastJira) != step.want {
			t.Errorf("%s: link %+v", step.status, l)
		}
	}
	if n := s.audits(findingsync.ActionPush); n != 5 {
		t.Errorf("%d push audit rows", n)
	}

	// Already there: queued again, nothing to do, no Jira call at all.
	s.enqueue(id)
	s.srv.ResetRequests()
	if res := s.mustDrain(); res.Unchanged != 1 || res.JiraCalls != 0 {
		t.Errorf("drain without change %+v", res)
	}
	// Jira already there although the link does not know it (a person moved the issue and the
	// webhook is not processed yet): TransitionTo looks and makes no transition call.
	if err := s.srv.TransitionAsHuman(key, "To Do"); err != nil {
		t.Fatal(err)
	}
	s.setStatus(id, findings.StatusOpen)
	s.srv.ResetRequests()
	res := s.mustDrain()
	if res.Transitions != 0 || res.Unchanged != 1 || s.srv.OperationCount(jirasim.OpTransitionDo) != 0 {
		t.Errorf("drain when Jira is already there: %+v, %v", res, s.srv.OperationCounts())
	}
	if l, _ := s.link(id); deref(l.LastJira) != "To Do" {
		t.Errorf("link %+v", l)
	}
	if s.srv.IssueCount() != 1 {
		t.Errorf("%d issues", s.srv.IssueCount())
	}
}

func TestDrainExactlyOnceWhenTheCreateResponseIsLost(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	if err := s.srv.SetFault("POST /rest/api/3/issue", jirasim.Fault{CommitThenDrop: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	res := s.mustDrain()
	if res.Created != 0 || res.Delayed != 1 || res.NextDue == nil {
		t.Fatalf("first drain %+v", res)
	}
	if s.srv.IssueCount() != 1 {
		t.Fatalf("the simulator should have committed the create: %d issues", s.srv.IssueCount())
	}
	if l, _ := s.link(id); l.State != "creating" || l.IssueKey != nil {
		t.Fatalf("link after the lost response %+v", l)
	}
	// The activity is retried (a worker restart looks the same: the intent is in Postgres).
	s.clock.Advance(res.NextDue.Sub(s.clock.Now()) + time.Millisecond)
	s.srv.ResetRequests()
	res = s.mustDrain()
	if res.Created != 1 || s.srv.OperationCount(jirasim.OpIssueCreate) != 0 || s.srv.OperationCount(jirasim.OpSearchJQL) != 1 {
		t.Fatalf("retry %+v, calls %v", res, s.srv.OperationCounts())
	}
	if s.srv.IssueCount() != 1 || s.issuesWithMarker(id) != 1 {
		t.Fatalf("%d issues", s.srv.IssueCount())
	}
	if l, _ := s.link(id); l.State != "linked" || deref(l.LastJira) != "To Do" {
		t.Errorf("link %+v", l)
	}
	if n := s.count(`SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = $2 AND metadata->>'found_by_marker' = 'true'`,
		s.org, findingsync.ActionIssueCreated); n != 1 {
		t.Errorf("%d audit rows of an issue found by its marker", n)
	}
}

func TestDrainWaitsForSearchConsistencyInsteadOfCreatingTwice(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	// Jira's search lags 15s; the activities wait the 10s call timeout + 20s window.
	s.srv.SetSearchLag(15 * time.Second)
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	start := s.clock.Now()
	if err := s.srv.SetFault("POST /rest/api/3/issue", jirasim.Fault{CommitThenDrop: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	res := s.mustDrain()
	if res.Delayed != 1 {
		t.Fatalf("first drain %+v", res)
	}
	// Retry after the transient backoff: the search does not see the issue yet, and the intent is
	// younger than the window, so the item waits instead of creating.
	s.clock.Advance(res.NextDue.Sub(s.clock.Now()) + time.Millisecond)
	s.srv.ResetRequests()
	res = s.mustDrain()
	if res.Created != 0 || res.Delayed != 1 || s.srv.OperationCount(jirasim.OpSearchJQL) != 1 || s.srv.OperationCount(jirasim.OpIssueCreate) != 0 {
		t.Fatalf("retry during the lag: %+v, calls %v", res, s.srv.OperationCounts())
	}
	if res.NextDue == nil || res.NextDue.Before(start.Add(30*time.Second)) || res.NextDue.After(start.Add(31*time.Second)) {
		t.Errorf("next due %v, want about %v", res.NextDue, start.Add(30*time.Second))
	}
	var reason string
	if err := s.owner().QueryRow(context.Background(), `SELECT last_error FROM finding_sync_queue WHERE finding_id = $1`, id).Scan(&reason); err != nil ||
		!strings.Contains(reason, "search") {
		t.Errorf("queue reason %q (%v)", reason, err)
	}
	s.clock.Advance(res.NextDue.Sub(s.clock.Now()) + time.Millisecond)
	res = s.mustDrain()
	if res.Created != 1 || s.srv.IssueCount() != 1 || s.issuesWithMarker(id) != 1 {
		t.Fatalf("after the window: %+v, %d issues", res, s.srv.IssueCount())
	}
}

func TestDrainRateLimitStormDelaysWithoutLoss(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	var ids []uuid.UUID
	for i := range 10 {
		ids = append(ids, s.finding("F-"+string(rune('a'+i)), findings.SeverityHigh, findings.StatusOpen))
	}
	if err := s.srv.SetFault("* /rest/api/3/**", jirasim.Fault{RateLimit: &jirasim.RateLimit{Rate: 0.5, Burst: 3, RetryAfter: 7}}); err != nil {
		t.Fatal(err)
	}
	res := s.mustDrain()
	if !res.RateLimited || res.Created != 3 || res.Delayed != 1 || res.Remaining != 0 || res.NextDue == nil {
		t.Fatalf("first drain %+v", res)
	}
	if wait := res.NextDue.Sub(s.clock.Now()); wait < 6*time.Second || wait > 9*time.Second {
		t.Errorf("next due in %v, want Retry-After 7s plus jitter", wait)
	}
	if s.queueLen() != 7 {
		t.Errorf("%d queue items, want 7", s.queueLen())
	}
	rounds := s.drainAll(40)
	if s.srv.IssueCount() != 10 {
		t.Fatalf("%d issues after %d rounds", s.srv.IssueCount(), rounds)
	}
	for _, id := range ids {
		if n := s.issuesWithMarker(id); n != 1 {
			t.Errorf("finding %s has %d issues", id, n)
		}
		if l, _ := s.link(id); l.State != "linked" || l.LastErrorKind != nil {
			t.Errorf("link %+v", l)
		}
	}
	// A rate-limited create is definitely not made: its retry creates without searching.
	if n := s.srv.OperationCount(jirasim.OpSearchJQL); n != 0 {
		t.Errorf("%d marker searches after rate-limited creates", n)
	}
}

// TestDrainWaitsOutShortRetryAfter: Jira's burst limit answers 429 with a Retry-After of a
// second; the drain waits that out itself and goes on, so one drain pushes the whole batch at
// Jira's pace instead of returning to the workflow after every burst.
func TestDrainWaitsOutShortRetryAfter(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	for i := range 8 {
		s.finding(fmt.Sprintf("F-%d", i), findings.SeverityHigh, findings.StatusOpen)
	}
	if err := s.srv.SetFault("POST /rest/api/3/issue", jirasim.Fault{RateLimit: &jirasim.RateLimit{Rate: 4, Burst: 3, RetryAfter: 1}}); err != nil {
		t.Fatal(err)
	}
	res := s.mustDrain()
	if !res.RateLimited || res.Created != 8 || res.Remaining != 0 || res.NextDue != nil || s.queueLen() != 0 {
		t.Fatalf("drain %+v, %d queued", res, s.queueLen())
	}
	if s.srv.IssueCount() != 8 || len(s.markerCounts()) != 8 {
		t.Errorf("%d issues, %d markers", s.srv.IssueCount(), len(s.markerCounts()))
	}
	limited := 0
	for _, r := range s.srv.Requests() {
		if strings.Contains(r.Fault, "ratelimit") {
			limited++
		}
	}
	if limited == 0 {
		t.Error("the simulator never rate-limited: the test proves nothing")
	}
}

func TestDrainForbiddenProjectIsAConfigurationError(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	if err := s.srv.SetProjectCreateForbidden("SEC", true); err != nil {
		t.Fatal(err)
	}
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	res := s.mustDrain()
	if res.Failed != 1 || res.Created != 0 || res.Remaining != 0 || res.NextDue != nil {
		t.Fatalf("drain %+v", res)
	}
	l, _ := s.link(id)
	if deref(l.LastErrorKind) != "issue_create_forbidden" || l.State != "creating" {
		t.Errorf("link %+v", l)
	}
	var kind, msg *string
	if err := s.owner().QueryRow(context.Background(), `SELECT finding_sync_error_kind, finding_sync_error FROM connections WHERE id = $1`, s.ref.ConnectionID).
		Scan(&kind, &msg); err != nil || deref(kind) != "issue_create_forbidden" || !strings.Contains(deref(msg), "403") {
		t.Errorf("connection finding-sync error %q %q (%v)", deref(kind), deref(msg), err)
	}
	// The workflow mirroring a healthy evidence sync does not wipe it.
	if err := s.acts.SetConnectionState(context.Background(), activities.StateUpdate{ConnectionRef: s.ref, Status: "active"}); err != nil {
		t.Fatal(err)
	}
	if n := s.count(`SELECT count(*) FROM connections WHERE id = $1 AND finding_sync_error_kind = 'issue_create_forbidden' AND last_error IS NULL`, s.ref.ConnectionID); n != 1 {
		t.Error("the finding-sync error did not survive the state mirror")
	}
	if s.queueLen() != 0 || s.audits(findingsync.ActionPushFailed) != 1 {
		t.Errorf("queue %d, push_failed audits %d", s.queueLen(), s.audits(findingsync.ActionPushFailed))
	}
	runs := s.runs(s.ref.ConnectionID)
	if len(runs) != 1 || runs[0].Outcome != activities.OutcomePartial {
		t.Errorf("runs %+v", runs)
	}

	// Not retried by itself; after the configuration is fixed the API re-enqueues errored links.
	if res := s.mustDrain(); res != (activities.DrainResult{}) {
		t.Errorf("drain without queue %+v", res)
	}
	if err := s.srv.SetProjectCreateForbidden("SEC", false); err != nil {
		t.Fatal(err)
	}
	s.reenqueueErrored()
	s.srv.ResetRequests()
	res = s.mustDrain()
	if res.Created != 1 || s.srv.OperationCount(jirasim.OpSearchJQL) != 0 {
		t.Errorf("drain after the fix %+v, calls %v", res, s.srv.OperationCounts())
	}
	if l, _ := s.link(id); l.State != "linked" || l.LastErrorKind != nil {
		t.Errorf("link %+v", l)
	}
}

func TestDrainUnknownCustomField(t *testing.T) {
	s := newSyncSite(t, siteOpts{mutate: func(c *findings.SyncConfig) { c.FrameworkField = "customfield_19999" }})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	res := s.mustDrain()
	if res.Failed != 1 || s.srv.IssueCount() != 0 {
		t.Fatalf("drain %+v", res)
	}
	if l, _ := s.link(id); deref(l.LastErrorKind) != "customfield_unknown" || !strings.Contains(deref(l.LastError), "customfield_19999") {
		t.Errorf("link %+v", l)
	}
}

// TestDrainLeavesUnknownFrameworkOptionsOut: Jira rejects a create whose multi-select names an
// option it does not have. A finding citing a framework the Jira admin has not added as an option
// still gets its one issue, with the known references in the field and every reference in the
// labels; the options are read once per drain, and only after such a rejection.
func TestDrainLeavesUnknownFrameworkOptionsOut(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	known := s.finding("F-known", findings.SeverityHigh, findings.StatusOpen)
	var ids []uuid.UUID
	for _, refs := range [][]string{{"OWASP_LLM01", "NIST_AI_RMF_MAP_1_1"}, {"NIST_AI_RMF_MAP_1_1"}} {
		id := s.finding("F-"+refs[len(refs)-1]+fmt.Sprint(len(refs)), findings.SeverityHigh, findings.StatusOpen)
		if _, err := s.owner().Exec(context.Background(), `UPDATE findings SET framework_refs = $1 WHERE id = $2`, refs, id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	s.srv.ResetRequests()
	res := s.mustDrain()
	if res.Created != 3 || res.Failed != 0 || s.srv.IssueCount() != 3 {
		t.Fatalf("drain %+v, %d issues", res, s.srv.IssueCount())
	}
	if n := s.srv.OperationCount(jirasim.OpIssueCreate); n != 5 {
		t.Errorf("%d create requests, want 3 plus one retry for each finding with an unknown option", n)
	}
	if n := s.srv.OperationCount(jirasim.OpCreateMetaFields); n != 1 {
		t.Errorf("%d createmeta field reads, want 1 per drain", n)
	}
	field := s.cfg.FrameworkField
	for i, want := range [][]string{{"OWASP_LLM01"}, nil} {
		is := s.mustIssue(ids[i])
		got := fmt.Sprint(is.CustomFields[field])
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("issue %s field %s = %s, want %v", is.Key, field, got, want)
			}
		}
		if strings.Contains(got, "NIST") || (want == nil && is.CustomFields[field] != nil) {
			t.Errorf("issue %s field %s = %s", is.Key, field, got)
		}
		if !strings.Contains(strings.Join(is.Labels, ","), "NIST_AI_RMF_MAP_1_1") {
			t.Errorf("issue %s labels %v lack the unknown reference", is.Key, is.Labels)
		}
		if l, _ := s.link(ids[i]); l.State != "linked" || l.LastErrorKind != nil {
			t.Errorf("link %+v", l)
		}
	}
	if got := fmt.Sprint(s.mustIssue(known).CustomFields[field]); !strings.Contains(got, "OWASP_LLM01") || !strings.Contains(got, "MITRE_ATLAS_AML_T0051") {
		t.Errorf("finding with known references: field %s", got)
	}
}

func TestDrainReauthLeavesTheQueue(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	// The site refuses the API token from now on (a 401 that no refresh can fix).
	if err := s.srv.SetFault("* /rest/api/3/**", jirasim.Fault{ErrorRate: 1, ErrorStatus: 401}); err != nil {
		t.Fatal(err)
	}
	_, err := s.drain(0)
	if err == nil {
		t.Fatal("drain succeeded")
	}
	if ae := appError(t, err); ae.Type() != failure.TypeReauthRequired || !ae.NonRetryable() {
		t.Errorf("error type %s", ae.Type())
	}
	if s.queueLen() != 1 {
		t.Errorf("%d queue items", s.queueLen())
	}
	if runs := s.runs(s.ref.ConnectionID); len(runs) != 1 || runs[0].Outcome != activities.OutcomeFailed || deref(runs[0].ErrorKind) != failure.TypeReauthRequired {
		t.Errorf("runs %+v", runs)
	}
}

func TestDrainWithoutFindingSyncClearsTheQueue(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	ctx := context.Background()
	if _, err := h.owner().Exec(ctx, `INSERT INTO findings (org_id, external_id, title, severity, status) VALUES ($1, 'x', 't', 'high', 'open')`, h.org); err != nil {
		t.Fatal(err)
	}
	if _, err := h.owner().Exec(ctx, `INSERT INTO finding_sync_queue (org_id, connection_id, finding_id) SELECT $1, $2, id FROM findings WHERE org_id = $1`,
		h.org, ref.ConnectionID); err != nil {
		t.Fatal(err)
	}
	val, err := h.env().ExecuteActivity(activities.NameDrainFindingQueue, activities.DrainInput{ConnectionRef: ref})
	if err != nil {
		t.Fatal(err)
	}
	var res activities.DrainResult
	_ = val.Get(&res)
	if res != (activities.DrainResult{}) {
		t.Errorf("result %+v", res)
	}
	if n := h.count(`SELECT count(*) FROM finding_sync_queue WHERE connection_id = $1`, ref.ConnectionID); n != 0 {
		t.Errorf("%d queue items", n)
	}
	if n := jiraRequests(srv); n != 0 {
		t.Errorf("%d Jira requests", n)
	}
}

func TestApplyInboundStatusChanges(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	s.mustDrain()
	key := s.mustIssue(id).Key
	s.changes() // the issue_created delivery: nothing to apply beyond the link's status
	audits := 0
	for _, step := range []struct {
		to   string
		want findings.Status
	}{
		{"In Progress", findings.StatusTriaged},
		{"Won't Do", findings.StatusAccepted},
		{"To Do", findings.StatusOpen}, // reopen
		{"In Progress", findings.StatusTriaged},
		{"Cancelled", findings.StatusFalsePositive},
		{"To Do", findings.StatusOpen},
		{"In Progress", findings.StatusTriaged},
		{"Done", findings.StatusResolved},
	} {
		if err := s.srv.TransitionAsHuman(key, step.to); err != nil {
			t.Fatal(err)
		}
		chs := s.changes()
		if len(chs) != 1 || !chs[0].StatusChanged {
			t.Fatalf("%s: deliveries %+v", step.to, chs)
		}
		res := s.apply(chs...)
		audits++
		if res.Applied != 1 {
			t.Errorf("%s: %+v", step.to, res)
		}
		if st, src := s.findingStatus(id); st != string(step.want) || src != "jira" {
			t.Errorf("%s: finding %s (%s), want %s", step.to, st, src, step.want)
		}
		if l, _ := s.link(id); deref(l.LastJira) != step.to {
			t.Errorf("%s: link %+v", step.to, l)
		}
	}
	if n := s.count(`SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = $2 AND actor_type = 'jira' AND metadata->>'issue_key' = $3`,
		s.org, findingsync.ActionInboundChange, key); n != audits {
		t.Errorf("%d inbound audit rows, want %d", n, audits)
	}
	// A change made by Jira is not pushed back, even when the finding is queued.
	s.enqueue(id)
	s.srv.ResetRequests()
	if res := s.mustDrain(); res.Transitions != 0 || res.JiraCalls != 0 {
		t.Errorf("drain after an inbound change %+v", res)
	}
}

func TestApplyIgnoresEchoesDuplicatesAndOldChanges(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	other := s.finding("F-2", findings.SeverityHigh, findings.StatusOpen)
	s.mustDrain()
	key := s.mustIssue(id).Key
	s.changes()

	// Our own two-hop transition comes back as two deliveries: neither changes the finding.
	s.setStatus(id, findings.StatusResolved)
	if res := s.mustDrain(); res.Transitions != 1 {
		t.Fatalf("drain %+v", res)
	}
	echoes := s.changes()
	if len(echoes) != 2 {
		t.Fatalf("%d deliveries of the push", len(echoes))
	}
	// Deliveries may arrive out of order (Jira and the simulator send them in parallel): an older
	// hop that arrives after the newer one is ignored as stale rather than matched as an echo.
	// Either way nothing is applied.
	res := s.apply(echoes...)
	if res.Applied != 0 || res.Echoes < 1 || res.Echoes+res.Ignored != 2 {
		t.Errorf("echo result %+v", res)
	}
	if st, src := s.findingStatus(id); st != "resolved" || src != "api" {
		t.Errorf("finding after echoes: %s (%s)", st, src)
	}
	if n := s.audits(findingsync.ActionInboundChange); n != 0 {
		t.Errorf("%d inbound audit rows after echoes", n)
	}
	// Delivered again (Jira retries): still nothing.
	if res := s.apply(echoes...); res.Applied != 0 {
		t.Errorf("repeated echoes %+v", res)
	}

	// A person reopens: applied once, however often it is delivered.
	if err := s.srv.TransitionAsHuman(key, "To Do"); err != nil {
		t.Fatal(err)
	}
	reopen := s.changes()
	if len(reopen) != 1 {
		t.Fatalf("%d deliveries", len(reopen))
	}
	res = s.apply(reopen[0], reopen[0])
	if res.Applied != 1 || res.Ignored != 1 {
		t.Errorf("duplicate delivery %+v", res)
	}
	if st, _ := s.findingStatus(id); st != "open" {
		t.Errorf("finding %s", st)
	}
	// An older change delivered late is ignored.
	old := echoes[1]
	if res := s.apply(old); res.Applied != 0 || res.Echoes != 0 || res.Ignored != 1 {
		t.Errorf("old change %+v", res)
	}
	if st, _ := s.findingStatus(id); st != "open" {
		t.Errorf("finding after an old change: %s", st)
	}
	if n := s.audits(findingsync.ActionInboundChange); n != 1 {
		t.Errorf("%d inbound audit rows", n)
	}
	// Changes about issues that are not linked are ignored.
	foreign := reopen[0]
	foreign.IssueID, foreign.IssueKey = "999999", "SEC-999"
	if res := s.apply(foreign); res.Ignored != 1 {
		t.Errorf("foreign issue %+v", res)
	}
	if st, _ := s.findingStatus(other); st != "open" {
		t.Errorf("unrelated finding %s", st)
	}
}

// TestEchoOfAPushWhoseAnswerWasLost: an attempt records its push of Done, walks the issue
// through In Progress to Done, and loses the answer (dropped response, killed worker). The next
// attempt finds the issue already Done. Jira's reports of both hops, arriving afterwards in any
// order, are the connector's own echo: neither changes the finding, and nothing is audited as a
// Jira change.
func TestEchoOfAPushWhoseAnswerWasLost(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	s.mustDrain()
	key := s.mustIssue(id).Key
	s.changes()

	s.setStatus(id, findings.StatusResolved)
	// The lost attempt: BeginLinkPush as it records it, then the two hops landing in Jira.
	if _, err := s.owner().Exec(context.Background(),
		`UPDATE finding_issue_links SET last_pushed_status = 'Done', last_push_at = $1 WHERE finding_id = $2`,
		s.clock.Now().Add(-time.Second), id); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{"In Progress", "Done"} {
		if err := s.srv.TransitionAs("", key, st, ""); err != nil {
			t.Fatal(err)
		}
	}
	// The retry finds Jira there and makes no call that changes anything.
	if res := s.mustDrain(); res.Transitions != 0 || s.queueLen() != 0 {
		t.Fatalf("retry drain %+v, %d queued", res, s.queueLen())
	}
	if is := s.mustIssue(id); is.Status != "Done" {
		t.Fatalf("issue %s", is.Status)
	}
	echoes := s.changes()
	if len(echoes) != 2 {
		t.Fatalf("%d deliveries of the lost push", len(echoes))
	}
	for _, order := range [][]findings.IssueChange{{echoes[1], echoes[0]}, {echoes[0], echoes[1]}} {
		if res := s.apply(order...); res.Applied != 0 || res.Requeued != 0 {
			t.Errorf("echoes of the lost push applied: %+v", res)
		}
	}
	if st, src := s.findingStatus(id); st != "resolved" || src != "api" {
		t.Errorf("finding after the echoes: %s (%s)", st, src)
	}
	if n := s.audits(findingsync.ActionInboundChange); n != 0 {
		t.Errorf("%d inbound audit rows", n)
	}
	// A person moving the issue afterwards is still a real change.
	if err := s.srv.TransitionAsHuman(key, "To Do"); err != nil {
		t.Fatal(err)
	}
	if res := s.apply(s.changes()...); res.Applied != 1 {
		t.Errorf("person's reopen %+v", res)
	}
	if st, _ := s.findingStatus(id); st != "open" {
		t.Errorf("finding after the reopen: %s", st)
	}
}

func TestApplyKeepsANewerPlatformChange(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	s.mustDrain()
	is := s.mustIssue(id)
	s.changes()
	// The finding is resolved through the API; before its push, a webhook arrives about a change
	// a person made a minute earlier.
	s.setStatus(id, findings.StatusResolved)
	res := s.apply(findings.IssueChange{
		DeliveryID: "late-1", Event: "jira:issue_updated", IssueID: is.ID, IssueKey: is.Key, StatusChanged: true,
		Status:          findings.JiraStatus{ID: jirasim.StatusWontDo, Name: "Won't Do", CategoryKey: "done"},
		TimestampMillis: time.Now().Add(-time.Minute).UnixMilli(),
	})
	if res.Requeued != 1 || res.Applied != 0 {
		t.Fatalf("apply %+v", res)
	}
	if st, src := s.findingStatus(id); st != "resolved" || src != "api" {
		t.Errorf("finding %s (%s)", st, src)
	}
	if s.queueLen() != 1 {
		t.Errorf("%d queue items", s.queueLen())
	}
}

func TestReconcileConvergesAfterALostWebhook(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	s.mustDrain()
	key := s.mustIssue(id).Key
	s.changes()
	s.srv.ResetRequests()
	// First pass: since the oldest link; the issue is as we left it.
	res := s.reconcile()
	if res.Examined != 1 || res.Applied != 0 || res.JiraCalls != 1 {
		t.Errorf("first pass %+v", res)
	}

	s.srv.LoseNextDeliveries(1)
	if err := s.srv.TransitionAsHuman(key, "In Progress"); err != nil {
		t.Fatal(err)
	}
	if chs := s.changes(); len(chs) != 0 {
		t.Fatalf("the webhook was not lost: %+v", chs)
	}
	s.clock.Advance(time.Minute)
	res = s.reconcile()
	if res.Applied != 1 || res.JiraCalls != 1 || res.Truncated {
		t.Errorf("pass after the lost webhook %+v", res)
	}
	if st, src := s.findingStatus(id); st != "triaged" || src != "jira" {
		t.Errorf("finding %s (%s)", st, src)
	}
	var reconciled *time.Time
	if err := s.owner().QueryRow(context.Background(), `SELECT reconciled_at FROM connections WHERE id = $1`, s.ref.ConnectionID).Scan(&reconciled); err != nil || reconciled == nil {
		t.Fatalf("reconciled_at %v (%v)", reconciled, err)
	}
	// Nothing new: nothing applied, and the late webhook of the same change would be a duplicate.
	if res := s.reconcile(); res.Applied != 0 {
		t.Errorf("third pass %+v", res)
	}
	if n := s.audits(findingsync.ActionInboundChange); n != 1 {
		t.Errorf("%d inbound audit rows", n)
	}
}

func TestReconcileIsBounded(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	s.mustDrain()
	key := s.mustIssue(id).Key
	s.reconcile()
	s.clock.Advance(time.Minute)
	// 1,050 other issues of the project changed over the last few minutes, then ours changed
	// (and its webhook was lost).
	base := s.srv.Now().Add(-4 * time.Minute)
	for i := range 1050 {
		if _, err := s.srv.AddIssue(jirasim.IssueSpec{Project: "SEC", IssueType: "Task", Summary: fmt.Sprintf("other %d", i),
			Created: base.Add(time.Duration(i) * 150 * time.Millisecond), Silent: true}); err != nil {
			t.Fatal(err)
		}
	}
	s.clock.Advance(10 * time.Second)
	s.srv.LoseNextDeliveries(1)
	if err := s.srv.TransitionAsHuman(key, "In Progress"); err != nil {
		t.Fatal(err)
	}
	s.changes()
	s.srv.ResetRequests()
	res := s.reconcile()
	if !res.Truncated || res.JiraCalls != 10 || res.Examined != 1000 || res.Applied != 0 || s.srv.OperationCount(jirasim.OpSearchJQL) != 10 {
		t.Errorf("pass over 1,051 changed issues: %+v", res)
	}
	// The next pass continues where this one stopped and reaches our issue.
	s.clock.Advance(time.Minute)
	res = s.reconcile()
	if res.Truncated || res.Applied != 1 || res.JiraCalls > 10 {
		t.Errorf("second pass %+v", res)
	}
	if st, _ := s.findingStatus(id); st != "triaged" {
		t.Errorf("finding %s after reconciliation", st)
	}
}

func TestWebhookRegistrationAndRefresh(t *testing.T) {
	s := newSyncSite(t, siteOpts{kind: connections.KindCloudOAuth})
	call := func(name string) activities.WebhookResult {
		t.Helper()
		val, err := s.env.ExecuteActivity(name, s.ref)
		var res activities.WebhookResult
		if err == nil {
			_ = val.Get(&res)
		}
		s.record(res, err)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return res
	}
	dynamic := func() []jirasim.WebhookRegistration {
		var out []jirasim.WebhookRegistration
		for _, w := range s.srv.Webhooks() {
			if w.Kind == jirasim.WebhookDynamic {
				out = append(out, w)
			}
		}
		return out
	}
	stored := func() (ids []int64, exp *time.Time, hash []byte) {
		t.Helper()
		if err := s.owner().QueryRow(context.Background(), `SELECT dynamic_webhook_ids, dynamic_webhook_expires_at, webhook_secret_hash FROM connections WHERE id = $1`,
			s.ref.ConnectionID).Scan(&ids, &exp, &hash); err != nil {
			t.Fatal(err)
		}
		return ids, exp, hash
	}
	check := func(res activities.WebhookResult) jirasim.WebhookRegistration {
		t.Helper()
		hooks := dynamic()
		if len(hooks) != 1 {
			t.Fatalf("%d dynamic webhooks", len(hooks))
		}
		w := hooks[0]
		prefix := testPublicURL + "/webhooks/jira/" + s.ref.ConnectionID.String() + "/"
		secret, ok := strings.CutPrefix(w.URL, prefix)
		if !ok || len(secret) < 40 {
			t.Fatalf("webhook URL does not point at the connection")
		}
		s.secrets = append(s.secrets, secret)
		if !reflect.DeepEqual(w.Events, []string{"jira:issue_created", "jira:issue_updated"}) || w.JQLFilter != `project = "SEC"` ||
			!reflect.DeepEqual(w.FieldIDsFilter, []string{"status"}) {
			t.Errorf("webhook %+v", w)
		}
		ids, exp, hash := stored()
		want := w.ExpiresAt.Truncate(time.Millisecond) // Jira reports milliseconds
		if !reflect.DeepEqual(ids, []int64{w.ID}) || !reflect.DeepEqual(res.IDs, ids) || exp == nil || !exp.Equal(want) ||
			res.ExpiresAt == nil || !res.ExpiresAt.Equal(want) || !reflect.DeepEqual(hash, connections.HashURLSecret(secret)) {
			t.Errorf("stored ids %v expiry %v; result %+v; webhook %d expires %v", ids, exp, res, w.ID, w.ExpiresAt)
		}
		return w
	}
	first := check(call(activities.NameRegisterWebhooks))

	// Registering again replaces the webhook (Jira allows one URL per app) and the secret.
	second := check(call(activities.NameRegisterWebhooks))
	if second.ID == first.ID || second.URL == first.URL {
		t.Error("registration did not replace the webhook")
	}

	// Refresh extends the same webhook.
	s.clock.Advance(24 * time.Hour)
	res := call(activities.NameRefreshWebhooks)
	refreshed := check(res)
	if refreshed.ID != second.ID || !refreshed.ExpiresAt.After(second.ExpiresAt) {
		t.Errorf("refresh: %d expires %v, before %d expires %v", refreshed.ID, refreshed.ExpiresAt, second.ID, second.ExpiresAt)
	}

	// Jira forgot it (expired or deleted): refresh registers a new one.
	if err := s.srv.DeleteWebhook(refreshed.ID); err != nil {
		t.Fatal(err)
	}
	again := check(call(activities.NameRefreshWebhooks))
	if again.ID == refreshed.ID {
		t.Error("a forgotten webhook was refreshed instead of registered")
	}

	// A token connection: an admin registers the webhook.
	other := s.connect(connections.KindCloudToken, s.srv, &connections.Config{SyncCadence: connections.Duration(24 * time.Hour),
		StaleThreshold: connections.Duration(48 * time.Hour), ResolvedJQL: connections.DefaultResolvedJQL, SampleSize: 25, FindingSync: &s.cfg})
	val, err := s.env.ExecuteActivity(activities.NameRegisterWebhooks, other)
	if err != nil {
		t.Fatal(err)
	}
	var skipped activities.WebhookResult
	_ = val.Get(&skipped)
	if !skipped.Skipped || len(skipped.IDs) != 0 {
		t.Errorf("token connection %+v", skipped)
	}
}

func TestDrainOnDataCenter(t *testing.T) {
	s := newSyncSite(t, siteOpts{kind: connections.KindDataCenterPAT})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	if err := s.srv.SetFault("POST /rest/api/2/issue", jirasim.Fault{CommitThenDrop: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	res := s.mustDrain()
	if res.Delayed != 1 {
		t.Fatalf("first drain %+v", res)
	}
	s.clock.Advance(res.NextDue.Sub(s.clock.Now()) + time.Millisecond)
	if res := s.mustDrain(); res.Created != 1 {
		t.Fatalf("retry %+v", res)
	}
	is := s.mustIssue(id)
	if s.srv.IssueCount() != 1 || !strings.Contains(is.Description, "View this finding in jiraconnect") {
		t.Errorf("%d issues; description %q", s.srv.IssueCount(), is.Description)
	}
	s.setStatus(id, findings.StatusResolved)
	if res := s.mustDrain(); res.Transitions != 1 {
		t.Fatalf("transition drain %+v", res)
	}
	if is, _ := s.srv.Issue(is.Key); is.Status != "Done" {
		t.Errorf("issue %s", is.Status)
	}
	echoes := s.changes()
	if res := s.apply(echoes...); res.Applied != 0 {
		t.Errorf("echoes %+v", res)
	}
	if err := s.srv.TransitionAsHuman(is.Key, "To Do"); err != nil {
		t.Fatal(err)
	}
	if res := s.apply(s.changes()...); res.Applied != 1 {
		t.Errorf("reopen %+v", res)
	}
	if st, _ := s.findingStatus(id); st != "open" {
		t.Errorf("finding %s", st)
	}
}
