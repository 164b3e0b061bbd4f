package activities_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

func (h *harness) test(ref activities.ConnectionRef) (activities.TestResult, error) {
	h.t.Helper()
	val, err := h.env().ExecuteActivity(activities.NameTestConnection, ref)
	var res activities.TestResult
	if err == nil {
		if err := val.Get(&res); err != nil {
			h.t.Fatal(err)
		}
	}
	h.record(res, err)
	return res, err
}

func checkMap(res activities.TestResult) map[string]activities.Check {
	m := map[string]activities.Check{}
	for _, c := range res.Checks {
		m[c.Name] = c
	}
	return m
}

var allChecks = []string{activities.CheckCredentials, activities.CheckMyself, activities.CheckProjectVisibility,
	activities.CheckSearchPermission, activities.CheckResolvedJQL}

func TestTestConnection(t *testing.T) {
	t.Run("healthy connection of each kind", func(t *testing.T) {
		for _, tc := range []struct {
			kind   connections.Kind
			flavor jirasim.Flavor
		}{{connections.KindCloudToken, jirasim.Cloud}, {connections.KindDataCenterPAT, jirasim.DataCenter}, {connections.KindCloudOAuth, jirasim.Cloud}} {
			t.Run(string(tc.kind), func(t *testing.T) {
				h := newHarness(t)
				srv := startSim(t, tc.flavor, h.log)
				seedFixture(t, srv)
				ref := h.connect(tc.kind, srv, nil)
				srv.ResetRequests()
				res, err := h.test(ref)
				if err != nil {
					t.Fatal(err)
				}
				if !res.OK || len(res.Checks) != len(allChecks) {
					t.Fatalf("result %+v", res)
				}
				for i, c := range res.Checks {
					if c.Name != allChecks[i] || !c.OK || c.Detail == "" {
						t.Errorf("check %d: %+v", i, c)
					}
				}
				m := checkMap(res)
				if !strings.Contains(m[activities.CheckMyself].Detail, "Site Admin") ||
					!strings.Contains(m[activities.CheckProjectVisibility].Detail, "2 projects") {
					t.Errorf("details: %+v", res.Checks)
				}
				if n := jiraRequests(srv); n != 4 {
					t.Errorf("%d Jira requests, want 4", n)
				}
				runs := h.runs(ref.ConnectionID)
				if len(runs) != 1 || runs[0].Outcome != "success" || runs[0].JiraCalls != 4 || runs[0].Trigger != "test" {
					t.Fatalf("test run %+v", runs)
				}
				if n := h.count(`SELECT count(*) FROM connector_runs WHERE id = $1 AND kind = 'test' AND jsonb_array_length(report->'checks') = 5`, runs[0].ID); n != 1 {
					t.Error("checks not stored in the run report")
				}
			})
		}
	})

	t.Run("rejected credentials skip the remaining checks", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.DataCenter, h.log)
		bogus := "bogus-pat-" + uuid.NewString()
		h.secrets = append(h.secrets, bogus)
		ref := h.store(connections.KindDataCenterPAT, srv, connections.Credentials{Kind: connections.KindDataCenterPAT, PAT: jira.NewSecret(bogus)}, nil, nil)
		res, err := h.test(ref)
		if err != nil {
			t.Fatal(err)
		}
		m := checkMap(res)
		if res.OK || !m[activities.CheckCredentials].OK || m[activities.CheckMyself].OK ||
			!strings.Contains(m[activities.CheckMyself].Detail, "re-authorize") ||
			!strings.HasPrefix(m[activities.CheckResolvedJQL].Detail, "skipped") || len(res.Checks) != 5 {
			t.Fatalf("result %+v", res)
		}
		runs := h.runs(ref.ConnectionID)
		if len(runs) != 1 || runs[0].Outcome != "failed" || deref(runs[0].ErrorKind) != failure.TypeReauthRequired || runs[0].JiraCalls != 1 {
			t.Fatalf("test run %+v", runs)
		}
	})

	t.Run("each failing check is reported on its own", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		cfg := connections.DefaultConfig()
		cfg.ResolvedJQL = "labels = security AND AND"
		ref := h.connect(connections.KindCloudToken, srv, &cfg) // no projects on the site
		mustFault(t, srv, "POST /rest/api/3/search/approximate-count", jirasim.Fault{ErrorRate: 1, ErrorStatus: http.StatusForbidden})
		res, err := h.test(ref)
		if err != nil {
			t.Fatal(err)
		}
		m := checkMap(res)
		if res.OK || !m[activities.CheckCredentials].OK || !m[activities.CheckMyself].OK {
			t.Fatalf("result %+v", res)
		}
		if c := m[activities.CheckProjectVisibility]; c.OK || !strings.Contains(c.Detail, "Browse Projects") {
			t.Errorf("project check %+v", c)
		}
		if c := m[activities.CheckSearchPermission]; c.OK || !strings.Contains(c.Detail, "403") {
			t.Errorf("search check %+v", c)
		}
		if c := m[activities.CheckResolvedJQL]; c.OK || !strings.Contains(c.Detail, "400") {
			t.Errorf("JQL check %+v", c)
		}
	})

	t.Run("revoked connection fails the credentials check", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		ref := h.connect(connections.KindCloudToken, srv, nil)
		if err := h.acts.RevokeCleanup(context.Background(), activities.RevokeInput{ConnectionRef: ref}); err != nil {
			t.Fatal(err)
		}
		srv.ResetRequests()
		res, err := h.test(ref)
		if err != nil {
			t.Fatal(err)
		}
		if c := checkMap(res)[activities.CheckCredentials]; res.OK || c.OK || !strings.Contains(c.Detail, "revoked") {
			t.Fatalf("result %+v", res)
		}
		if len(srv.Requests()) != 0 {
			t.Fatal("a revoked connection was tested against Jira")
		}
	})

	t.Run("OAuth connection on a worker without OAuth is a failed check", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		ref := h.connect(connections.KindCloudOAuth, srv, nil)
		h.conns.OAuth = nil
		res, err := h.test(ref)
		if err != nil {
			t.Fatal(err)
		}
		if c := checkMap(res)[activities.CheckCredentials]; res.OK || c.OK || !strings.Contains(c.Detail, "OAuth is not configured") {
			t.Fatalf("result %+v", res)
		}
		// The same condition fails a sync as a configuration error.
		_, err = h.sync(ref, 1)
		if ae := appError(t, err); ae.Type() != failure.TypeConfig || !ae.NonRetryable() {
			t.Fatalf("%v", err)
		}
	})
}

var findingChecks = []string{activities.CheckFindingProject, activities.CheckFindingIssueType, activities.CheckFindingFields,
	activities.CheckFindingTransitions, activities.CheckFindingTestIssue, activities.CheckFindingTestTransition}

// testIssues returns the simulator's issues in SEC that carry the connection test's label.
func testIssues(srv *jirasim.Server) []jirasim.Issue {
	var out []jirasim.Issue
	for i := 1; i <= srv.IssueCount()+5; i++ {
		if is, ok := srv.Issue(fmt.Sprintf("SEC-%d", i)); ok && slices.Contains(is.Labels, activities.TestIssueLabel) {
			out = append(out, is)
		}
	}
	return out
}

func keysOf(issues []jirasim.Issue) []string {
	out := make([]string, len(issues))
	for i, is := range issues {
		out[i] = is.Key + " (" + is.Status + ")"
	}
	return out
}

// assertSkipped checks that each named check is reported as skipped after the check after.
func assertSkipped(t *testing.T, m map[string]activities.Check, after string, names ...string) {
	t.Helper()
	for _, n := range names {
		if c, ok := m[n]; !ok || c.OK || c.Detail != "skipped: the "+after+" check failed" {
			t.Errorf("%s: %+v, want skipped after %s", n, c, after)
		}
	}
}

// findingTest runs the connection test of a finding-sync site through a fresh activity
// environment, which gives every call the same run key, like a Temporal retry of one activity.
func (s *syncSite) findingTest() activities.TestResult {
	s.t.Helper()
	res, err := s.harness.test(s.ref)
	if err != nil {
		s.t.Fatalf("the test activity failed: %v", err)
	}
	names := make([]string, len(res.Checks))
	for i, c := range res.Checks {
		names[i] = c.Name
	}
	if want := append(slices.Clone(allChecks), findingChecks...); !slices.Equal(names, want) {
		s.t.Fatalf("checks %v, want %v", names, want)
	}
	return res
}

// oauthFindingSite is a finding-sync site whose connection is an OAuth grant of scopes.
func oauthFindingSite(t *testing.T, scopes ...string) *syncSite {
	t.Helper()
	s := newSyncSite(t, siteOpts{})
	toks, err := s.srv.GrantOAuth(adminEmail, scopes...)
	if err != nil {
		t.Fatal(err)
	}
	s.secrets = append(s.secrets, toks.AccessToken, toks.RefreshToken)
	cid := s.srv.CloudID()
	clientID, clientSecret := s.srv.OAuthClient()
	s.secrets = append(s.secrets, clientSecret)
	s.conns.OAuth = &jira.OAuthApp{ClientID: clientID, ClientSecret: jira.NewSecret(clientSecret), RedirectURL: "https://app.example.com/cb",
		AuthBaseURL: s.srv.URL, APIBaseURL: s.srv.URL, Logger: s.log, Now: s.srv.Now}
	cc := connections.DefaultConfig()
	cfg := s.cfg.Clone()
	cc.FindingSync = &cfg
	s.ref = s.store(connections.KindCloudOAuth, s.srv, connections.Credentials{Kind: connections.KindCloudOAuth,
		Access: jira.NewSecret(toks.AccessToken), Refresh: jira.NewSecret(toks.RefreshToken),
		Expiry: s.srv.Now().Add(time.Duration(toks.ExpiresIn) * time.Second)}, &cid, &cc)
	return s
}

func TestTestConnectionFindingSync(t *testing.T) {
	t.Run("healthy connection creates one test issue and moves it to Done", func(t *testing.T) {
		for _, kind := range []connections.Kind{connections.KindCloudToken, connections.KindDataCenterPAT, connections.KindCloudOAuth} {
			t.Run(string(kind), func(t *testing.T) {
				var s *syncSite
				if kind == connections.KindCloudOAuth {
					s = oauthFindingSite(t, jira.Scopes(jira.Features{FindingSync: true, DynamicWebhooks: true})...)
				} else {
					s = newSyncSite(t, siteOpts{kind: kind})
				}
				s.srv.ResetRequests()
				res := s.findingTest()
				for _, c := range res.Checks {
					if !c.OK || c.Detail == "" {
						t.Errorf("check %+v", c)
					}
				}
				if !res.OK {
					t.Fatalf("result %+v", res)
				}
				issues := testIssues(s.srv)
				if len(issues) != 1 {
					t.Fatalf("%d test issues, want 1", len(issues))
				}
				is := issues[0]
				if is.Status != "Done" || is.Resolution != "Done" || is.Summary != activities.TestIssueSummary || is.IssueType != "Vulnerability" {
					t.Errorf("test issue %s: status %s resolution %s summary %q type %s", is.Key, is.Status, is.Resolution, is.Summary, is.IssueType)
				}
				for _, l := range is.Labels {
					if findings.IsIssueMarker(l) {
						t.Errorf("test issue carries a finding marker %s", l)
					}
				}
				if len(is.Labels) != 2 || !strings.HasPrefix(is.Labels[1], activities.TestIssueLabel+"-") {
					t.Errorf("labels %v", is.Labels)
				}
				if len(is.CustomFields) != 0 {
					t.Errorf("optional custom fields were filled: %v", is.CustomFields)
				}
				m := checkMap(res)
				for name, want := range map[string]string{
					activities.CheckFindingProject:        "project SEC is visible",
					activities.CheckFindingIssueType:      "Vulnerability (" + jirasim.IssueTypeVulnerability + ")",
					activities.CheckFindingFields:         s.cfg.FrameworkField + " (multiselect)",
					activities.CheckFindingTransitions:    `open → "To Do", triaged → "In Progress", resolved → "Done", accepted → "Won't Do", false_positive → "Cancelled"`,
					activities.CheckFindingTestIssue:      "created test issue " + is.Key,
					activities.CheckFindingTestTransition: "moved test issue " + is.Key + ` from "To Do" to "Done"`,
				} {
					if !strings.Contains(m[name].Detail, want) {
						t.Errorf("%s detail %q lacks %q", name, m[name].Detail, want)
					}
				}
				// Calls: 4 base checks; project statuses; createmeta issue types and fields; the label
				// search and the create; the two-hop walk To Do → In Progress → Done (a failed direct
				// attempt: GET issue + transitions; a hop: GET issue + transitions + POST; then the
				// direct attempt: GET issue + transitions + POST).
				counts := s.srv.OperationCounts()
				want := map[string]int{jirasim.OpMyself: 1, jirasim.OpProjectStatuses: 1, jirasim.OpCreateMetaTypes: 1,
					jirasim.OpCreateMetaFields: 1, jirasim.OpIssueCreate: 1, jirasim.OpIssueGet: 3, jirasim.OpTransitionsGet: 3, jirasim.OpTransitionDo: 2}
				if kind == connections.KindDataCenterPAT {
					want[jirasim.OpProjectList], want[jirasim.OpSearchLegacy] = 1, 3
				} else {
					want[jirasim.OpProjectSearch], want[jirasim.OpApproximateCount], want[jirasim.OpSearchJQL] = 1, 1, 2
				}
				for op, n := range want {
					if counts[op] != n {
						t.Errorf("%s: %d calls, want %d (all: %v)", op, counts[op], n, counts)
					}
				}
				runs := s.runs(s.ref.ConnectionID)
				if len(runs) != 1 || runs[0].Outcome != "success" || runs[0].JiraCalls != 17 {
					t.Fatalf("test run %+v", runs)
				}
				if n := s.count(`SELECT count(*) FROM connector_runs WHERE id = $1 AND jsonb_array_length(report->'checks') = 11
					AND (report->'calls_by_operation'->>'issue.create')::int = 1`, runs[0].ID); n != 1 {
					t.Error("finding checks or their calls not stored in the run report")
				}
				// The test issue is nobody's finding: nothing was linked, nothing audited as a finding change.
				if n := s.count(`SELECT count(*) FROM finding_issue_links WHERE connection_id = $1`, s.ref.ConnectionID); n != 0 {
					t.Errorf("%d finding links after a connection test", n)
				}
				if len(s.markerCounts()) != 0 {
					t.Errorf("marker labels in Jira: %v", s.markerCounts())
				}
			})
		}
	})

	t.Run("an OAuth grant without write:jira-work fails at the test issue", func(t *testing.T) {
		s := oauthFindingSite(t, jirasim.ScopeReadWork, jirasim.ScopeReadUser, jirasim.ScopeOffline, jirasim.ScopeManageWebhook)
		res := s.findingTest()
		m := checkMap(res)
		for _, n := range findingChecks[:4] {
			if !m[n].OK {
				t.Errorf("%s: %+v", n, m[n])
			}
		}
		if c := m[activities.CheckFindingTestIssue]; res.OK || c.OK || !strings.Contains(c.Detail, "re-authorize") {
			t.Fatalf("test issue check %+v", c)
		}
		assertSkipped(t, m, activities.CheckFindingTestIssue, activities.CheckFindingTestTransition)
		if n := len(testIssues(s.srv)); n != 0 {
			t.Fatalf("%d test issues", n)
		}
	})

	t.Run("an unknown custom field fails the fields check and creates nothing", func(t *testing.T) {
		s := newSyncSite(t, siteOpts{mutate: func(c *findings.SyncConfig) { c.FrameworkField = "customfield_99999" }})
		s.srv.ResetRequests()
		res := s.findingTest()
		m := checkMap(res)
		if c := m[activities.CheckFindingFields]; res.OK || c.OK || !strings.Contains(c.Detail, "customfield_unknown") ||
			!strings.Contains(c.Detail, "customfield_99999") {
			t.Fatalf("fields check %+v", c)
		}
		// The status map is independent of the fields and is still checked.
		for _, n := range []string{activities.CheckFindingProject, activities.CheckFindingIssueType, activities.CheckFindingTransitions} {
			if !m[n].OK {
				t.Errorf("%s: %+v", n, m[n])
			}
		}
		assertSkipped(t, m, activities.CheckFindingFields, activities.CheckFindingTestIssue, activities.CheckFindingTestTransition)
		if n := len(testIssues(s.srv)); n != 0 || s.srv.OperationCount(jirasim.OpIssueCreate) != 0 {
			t.Fatalf("%d test issues, %d creates", n, s.srv.OperationCount(jirasim.OpIssueCreate))
		}
		runs := s.runs(s.ref.ConnectionID)
		if len(runs) != 1 || runs[0].Outcome != "failed" || deref(runs[0].ErrorKind) != failure.TypeConfig ||
			!strings.HasPrefix(deref(runs[0].Error), activities.CheckFindingFields+": customfield_unknown") {
			t.Fatalf("test run %+v", runs)
		}
	})

	t.Run("a mapped field of the wrong kind fails the fields check", func(t *testing.T) {
		s := newSyncSite(t, siteOpts{mutate: func(c *findings.SyncConfig) { c.FindingIDField = jirasim.FieldSecurityLabels }})
		c := checkMap(s.findingTest())[activities.CheckFindingFields]
		if c.OK || !strings.Contains(c.Detail, jirasim.FieldSecurityLabels+" (finding_id) is a labels field") {
			t.Fatalf("fields check %+v", c)
		}
	})

	t.Run("a required custom field is filled on the test issue", func(t *testing.T) {
		s := newSyncSite(t, siteOpts{})
		if err := s.srv.SetFieldRequired("SEC", jirasim.IssueTypeVulnerability, s.cfg.FrameworkField, true); err != nil {
			t.Fatal(err)
		}
		if res := s.findingTest(); !res.OK {
			t.Fatalf("result %+v", res)
		}
		issues := testIssues(s.srv)
		if len(issues) != 1 || len(issues[0].CustomFields) != 1 || issues[0].CustomFields[s.cfg.FrameworkField] == nil {
			t.Fatalf("test issues %v", keysOf(issues))
		}
	})

	t.Run("an issue type the project does not have fails and creates nothing", func(t *testing.T) {
		s := newSyncSite(t, siteOpts{mutate: func(c *findings.SyncConfig) { c.IssueType = "Incident" }})
		res := s.findingTest()
		m := checkMap(res)
		if c := m[activities.CheckFindingIssueType]; res.OK || c.OK || !strings.Contains(c.Detail, "issuetype_not_in_project") ||
			!strings.Contains(c.Detail, `"Incident"`) || !strings.Contains(c.Detail, "Vulnerability (") {
			t.Fatalf("issue type check %+v", c)
		}
		if !m[activities.CheckFindingProject].OK {
			t.Errorf("project check %+v", m[activities.CheckFindingProject])
		}
		assertSkipped(t, m, activities.CheckFindingIssueType, findingChecks[2:]...)
		if n := len(testIssues(s.srv)); n != 0 {
			t.Fatalf("%d test issues", n)
		}
	})

	t.Run("a missing project fails the project check", func(t *testing.T) {
		s := newSyncSite(t, siteOpts{mutate: func(c *findings.SyncConfig) { c.ProjectKey = "GONE" }})
		res := s.findingTest()
		m := checkMap(res)
		if c := m[activities.CheckFindingProject]; res.OK || c.OK || !strings.Contains(c.Detail, "project GONE does not exist or is not visible") {
			t.Fatalf("project check %+v", c)
		}
		assertSkipped(t, m, activities.CheckFindingProject, findingChecks[1:]...)
		// The base checks are unaffected.
		for _, n := range allChecks {
			if !m[n].OK {
				t.Errorf("%s: %+v", n, m[n])
			}
		}
	})

	t.Run("a status map the workflow cannot satisfy fails the transitions check", func(t *testing.T) {
		s := newSyncSite(t, siteOpts{mutate: func(c *findings.SyncConfig) {
			// "Doing" does not exist, but In Progress is the only indeterminate status: fine.
			c.StatusMap[findings.StatusTriaged] = findings.StatusTarget{Name: "Doing", CategoryKey: findings.CategoryIndeterminate}
			// "Declined" does not exist and three statuses are done: ambiguous.
			c.StatusMap[findings.StatusAccepted] = findings.StatusTarget{Name: "Declined", CategoryKey: findings.CategoryDone}
		}})
		res := s.findingTest()
		m := checkMap(res)
		c := m[activities.CheckFindingTransitions]
		if res.OK || c.OK || !strings.Contains(c.Detail, `accepted: no status is named "Declined" and category done has several ("Done", "Won't Do", "Cancelled")`) ||
			strings.Contains(c.Detail, "triaged:") {
			t.Fatalf("transitions check %+v", c)
		}
		if !m[activities.CheckFindingFields].OK {
			t.Errorf("fields check %+v", m[activities.CheckFindingFields])
		}
		assertSkipped(t, m, activities.CheckFindingTransitions, activities.CheckFindingTestIssue, activities.CheckFindingTestTransition)
		if n := len(testIssues(s.srv)); n != 0 {
			t.Fatalf("%d test issues", n)
		}

		// The same fallback with one candidate passes, and says so.
		s2 := newSyncSite(t, siteOpts{mutate: func(c *findings.SyncConfig) {
			c.StatusMap[findings.StatusTriaged] = findings.StatusTarget{Name: "Doing", CategoryKey: findings.CategoryIndeterminate}
		}})
		c = checkMap(s2.findingTest())[activities.CheckFindingTransitions]
		if !c.OK || !strings.Contains(c.Detail, `triaged → "In Progress" (no status is named "Doing"; the only status of category indeterminate)`) {
			t.Fatalf("transitions check %+v", c)
		}
	})

	t.Run("a failed create is a failed check, not a failed activity", func(t *testing.T) {
		s := newSyncSite(t, siteOpts{})
		mustFault(t, s.srv, "POST /rest/api/3/issue", jirasim.Fault{ErrorRate: 1, ErrorStatus: http.StatusInternalServerError})
		res := s.findingTest()
		m := checkMap(res)
		if c := m[activities.CheckFindingTestIssue]; res.OK || c.OK || !strings.Contains(c.Detail, "could not create a test issue in project SEC") ||
			!strings.Contains(c.Detail, "500") {
			t.Fatalf("test issue check %+v", c)
		}
		assertSkipped(t, m, activities.CheckFindingTestIssue, activities.CheckFindingTestTransition)
		if n := len(testIssues(s.srv)); n != 0 {
			t.Fatalf("%d test issues", n)
		}
		runs := s.runs(s.ref.ConnectionID)
		if len(runs) != 1 || runs[0].Outcome != "failed" || deref(runs[0].ErrorKind) != failure.TypeTransient {
			t.Fatalf("test run %+v", runs)
		}
	})

	t.Run("a retry after a create that committed reuses its issue", func(t *testing.T) {
		s := newSyncSite(t, siteOpts{})
		// Jira creates the issue but the response is lost.
		mustFault(t, s.srv, "POST /rest/api/3/issue", jirasim.Fault{CommitThenDrop: true, Times: 1})
		first := s.findingTest()
		if c := checkMap(first)[activities.CheckFindingTestIssue]; first.OK || c.OK {
			t.Fatalf("first attempt %+v", first)
		}
		if n := len(testIssues(s.srv)); n != 1 {
			t.Fatalf("%d test issues after the lost response", n)
		}
		// The same run again (the run key is attempt-stable): the issue is found, not created again.
		second := s.findingTest()
		if !second.OK {
			t.Fatalf("retry %+v", second)
		}
		issues := testIssues(s.srv)
		if len(issues) != 1 || issues[0].Status != "Done" || s.srv.OperationCount(jirasim.OpIssueCreate) != 1 {
			t.Fatalf("test issues %v, %d creates", keysOf(issues), s.srv.OperationCount(jirasim.OpIssueCreate))
		}
		if c := checkMap(second)[activities.CheckFindingTestIssue]; !strings.Contains(c.Detail, issues[0].Key+", created by an earlier attempt") {
			t.Errorf("test issue check %+v", c)
		}
		runs := s.runs(s.ref.ConnectionID)
		if len(runs) != 1 || runs[0].Outcome != "success" || runs[0].Attempts != 2 {
			t.Fatalf("runs %+v", runs)
		}
		// A third call answers from the recorded run: no Jira call, still one issue.
		before := len(s.srv.Requests())
		if third := s.findingTest(); !third.OK || len(s.srv.Requests()) != before || len(testIssues(s.srv)) != 1 {
			t.Fatalf("replay %+v", third)
		}
	})

	t.Run("rejected credentials skip the finding checks", func(t *testing.T) {
		s := newSyncSite(t, siteOpts{kind: connections.KindDataCenterPAT})
		cc := connections.DefaultConfig()
		cfg := s.cfg.Clone()
		cc.FindingSync = &cfg
		bogus := "bogus-pat-" + uuid.NewString()
		s.secrets = append(s.secrets, bogus)
		s.ref = s.store(connections.KindDataCenterPAT, s.srv, connections.Credentials{Kind: connections.KindDataCenterPAT, PAT: jira.NewSecret(bogus)}, nil, &cc)
		res := s.findingTest()
		assertSkipped(t, checkMap(res), activities.CheckMyself, findingChecks...)
		if s.srv.OperationCount(jirasim.OpProjectStatuses) != 0 {
			t.Fatal("finding checks ran with rejected credentials")
		}
	})
}
