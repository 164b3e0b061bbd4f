package jira_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/adf"
	"github.com/jiraconnect/jiraconnect/jira/jql"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// seedSmall creates two projects: SEC with 12 open and 18 done issues (10 of them labelled
// security and resolved within the last 30 days), OPS with 5 open tasks.
func seedSmall(srv *jirasim.Server) {
	must := func(_ any, err error) {
		if err != nil {
			panic(err)
		}
	}
	must(srv.AddProject(jirasim.ProjectSpec{Key: "SEC", Name: "Security"}))
	must(srv.AddProject(jirasim.ProjectSpec{Key: "OPS", Name: "Operations"}))
	now := srv.Now()
	for i := range 30 {
		spec := jirasim.IssueSpec{Project: "SEC", IssueType: "Bug", Summary: fmt.Sprintf("finding %02d", i), Silent: true,
			Created: now.Add(-time.Duration(90-i) * 24 * time.Hour)}
		switch {
		case i < 8:
			spec.Status = "To Do"
		case i < 12:
			spec.Status = "In Progress"
		case i < 22:
			spec.Status, spec.Labels = "Done", []string{"security"}
			spec.Resolved = now.Add(-time.Duration(i-10) * 24 * time.Hour)
		default:
			spec.Status = "Done"
			spec.Resolved = now.Add(-200 * 24 * time.Hour)
		}
		must(srv.AddIssue(spec))
	}
	for i := range 5 {
		must(srv.AddIssue(jirasim.IssueSpec{Project: "OPS", IssueType: "Task", Summary: fmt.Sprintf("ops %d", i), Silent: true}))
	}
}

func mustJQL(t testing.TB, q jql.Query) string {
	t.Helper()
	s, err := q.Build()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestE2EReadOperations(t *testing.T) {
	for _, s := range allSites(t, seedSmall) {
		t.Run(s.name, func(t *testing.T) {
			ctx := context.Background()
			me, err := s.c.Myself(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if s.c.Flavor() == jira.Cloud && me.AccountID == "" || s.c.Flavor() == jira.DataCenter && me.Name == "" {
				t.Errorf("myself = %+v", me)
			}
			if n, err := s.c.ProjectCount(ctx); err != nil || n != 2 {
				t.Errorf("ProjectCount = %d, %v", n, err)
			}
			all := mustJQL(t, jql.Query{Where: jql.In("project", "SEC", "OPS")})
			if n, err := s.c.ApproximateCount(ctx, all); err != nil || n != 35 {
				t.Errorf("total = %d, %v", n, err)
			}
			open := mustJQL(t, jql.Query{Where: jql.And(jql.Eq("project", "SEC"), jql.NotEq("statusCategory", "done"))})
			if n, err := s.c.ApproximateCount(ctx, open); err != nil || n != 12 {
				t.Errorf("open = %d, %v", n, err)
			}
			sample := mustJQL(t, jql.Query{
				Where:   jql.And(jql.Eq("project", "SEC"), jql.Eq("labels", "security"), jql.Eq("statusCategory", "done"), jql.GreaterEq("resolved", jql.DaysAgo(30))),
				OrderBy: []jql.Order{jql.Desc("resolved")},
			})
			fields := []string{"summary", "status", "resolution", "resolutiondate", "labels", "issuetype", "created", "updated"}
			var got []jira.Issue
			pages := 0
			for page, err := range s.c.SearchPages(ctx, jira.SearchRequest{JQL: sample, Fields: fields, MaxResults: 3}, 10) {
				if err != nil {
					t.Fatal(err)
				}
				pages++
				got = append(got, page.Issues...)
			}
			if len(got) != 10 || pages != 4 {
				t.Fatalf("sample: %d issues in %d pages", len(got), pages)
			}
			for i, is := range got {
				f := is.Fields
				if f.Status == nil || f.Status.Category.Key != "done" || f.Resolution == nil || f.ResolutionDate.IsZero() || f.Labels[0] != "security" || f.IssueType.Name != "Bug" {
					t.Fatalf("issue %d = %+v", i, f)
				}
				if i > 0 && f.ResolutionDate.After(got[i-1].Fields.ResolutionDate) {
					t.Errorf("not ordered by resolved desc at %d", i)
				}
			}
			// The page budget is enforced and reported.
			var last error
			n := 0
			for _, err := range s.c.SearchPages(ctx, jira.SearchRequest{JQL: sample, MaxResults: 3}, 2) {
				if err != nil {
					last = err
					break
				}
				n++
			}
			if n != 2 || !errors.Is(last, jira.ErrPageLimit) {
				t.Errorf("page limit: %d pages, err %v", n, last)
			}
			is, err := s.c.GetIssue(ctx, got[0].Key, "summary", "status")
			if err != nil || is.Key != got[0].Key || is.Fields.Summary == "" || is.Fields.Status == nil {
				t.Errorf("GetIssue = %+v, %v", is, err)
			}
			byOp := s.stats.ByOp()
			if byOp["myself"] != 1 || byOp["project.count"] != 1 || byOp["search.count"] != 2 || byOp["search"] != 6 || byOp["issue.get"] != 1 {
				t.Errorf("stats = %v", byOp)
			}
		})
	}
}

func TestE2ECreateTransitionAndCreateMeta(t *testing.T) {
	for _, s := range allSites(t, seedSmall) {
		t.Run(s.name, func(t *testing.T) {
			ctx := context.Background()
			roles := map[string]string{
				"framework_refs":  jirasim.FieldFrameworkReferences,
				"security_labels": jirasim.FieldSecurityLabels,
				"finding_id":      jirasim.FieldFindingID,
				"details":         jirasim.FieldFindingDetails,
			}
			types, err := s.c.IssueTypes(ctx, "SEC")
			if err != nil || len(types) == 0 {
				t.Fatalf("IssueTypes = %v, %v", types, err)
			}
			rep, err := s.c.ValidateCreateConfig(ctx, jira.CreateConfig{Project: "SEC", IssueType: "Bug", CustomFields: roles, ProvidedFields: []string{"description", "labels"}})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				t.Fatalf("problems: %+v", rep.Problems)
			}
			wantKinds := map[string]jira.FieldKind{"framework_refs": jira.FieldKindMultiSelect, "security_labels": jira.FieldKindLabels, "finding_id": jira.FieldKindText, "details": jira.FieldKindTextArea}
			for role, k := range wantKinds {
				if rep.Fields[role].Kind() != k {
					t.Errorf("%s kind = %s, want %s", role, rep.Fields[role].Kind(), k)
				}
			}
			// A required field the config does not fill, an unknown custom field, a wrong type.
			if err := s.srv.SetFieldRequired("SEC", "Bug", jirasim.FieldFindingID, true); err != nil {
				t.Fatal(err)
			}
			roles2 := map[string]string{"bogus": "customfield_99999"}
			rep, err = s.c.ValidateCreateConfig(ctx, jira.CreateConfig{Project: "SEC", IssueType: "Bug", CustomFields: roles2})
			if err != nil {
				t.Fatal(err)
			}
			codes := map[jira.ProblemCode]string{}
			for _, p := range rep.Problems {
				codes[p.Code] += p.FieldID
			}
			if codes[jira.ProblemCustomFieldUnknown] != "customfield_99999" || codes[jira.ProblemRequiredUnfilled] != jirasim.FieldFindingID {
				t.Errorf("problems = %+v", rep.Problems)
			}
			_ = s.srv.SetFieldRequired("SEC", "Bug", jirasim.FieldFindingID, false)
			rep, err = s.c.ValidateCreateConfig(ctx, jira.CreateConfig{Project: "OPS", IssueType: "NoSuchType"})
			if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Code != jira.ProblemIssueTypeNotFound {
				t.Errorf("unknown type: %+v %v", rep, err)
			}
			if _, err := s.c.ValidateCreateConfig(ctx, jira.CreateConfig{Project: "NOPE", IssueType: "Bug"}); jira.KindOf(err) != jira.KindNotFound {
				t.Errorf("unknown project err = %v", err)
			}

			link, _ := adf.LinkText("scan 42", "https://scanner.example.com/scans/42")
			desc := adf.NewDoc(
				adf.Heading(2, adf.Text("SQL injection")),
				adf.Paragraph(adf.Text("Probe "), adf.Text("sqli-1", adf.Code()), adf.Text(" found "), link),
				adf.CodeBlock("", "' OR 1=1 -- [evil|https://evil.example] {code}"),
			)
			created, err := s.c.CreateIssue(ctx, jira.IssueInput{
				Project: "SEC", IssueType: "Bug", Summary: "SQL injection in /login", Labels: []string{"security", "jiraconnect"},
				Description: desc,
				CustomFields: map[string]jira.FieldValue{
					jirasim.FieldFrameworkReferences: jira.MultiSelect("SOC 2 CC8.1", "ISO 27001 A.8.32"),
					jirasim.FieldSecurityLabels:      jira.LabelsValue("probe-sqli", "scan-42"),
					jirasim.FieldFindingID:           jira.TextValue("finding-42"),
					jirasim.FieldFindingDetails:      jira.TextAreaValue(adf.NewDoc(adf.Paragraph(adf.Text("excerpt *not bold* h1. x")))),
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(created.Key, "SEC-") || created.BrowseURL != s.srv.URL+"/browse/"+created.Key {
				t.Errorf("created = %+v", created)
			}
			stored, ok := s.srv.Issue(created.Key)
			if !ok {
				t.Fatal("created issue not in simulator")
			}
			if stored.Summary != "SQL injection in /login" || strings.Join(stored.Labels, ",") != "jiraconnect,security" && strings.Join(stored.Labels, ",") != "security,jiraconnect" {
				t.Errorf("stored = %+v", stored)
			}
			cf, _ := json.Marshal(stored.CustomFields)
			for _, want := range []string{"SOC 2 CC8.1", "ISO 27001 A.8.32", "probe-sqli", "finding-42"} {
				if !strings.Contains(string(cf), want) {
					t.Errorf("custom fields %s lack %q", cf, want)
				}
			}
			if s.c.Flavor() == jira.Cloud {
				if len(stored.DescriptionADF) == 0 || !strings.Contains(string(stored.DescriptionADF), `"type":"codeBlock"`) {
					t.Errorf("description ADF = %s", stored.DescriptionADF)
				}
			} else if !strings.Contains(stored.Description, "h2. SQL injection") || !strings.Contains(stored.Description, "[scan 42|https://scanner.example.com/scans/42]") ||
				strings.Contains(stored.Description, "[evil|") || strings.Contains(stored.Description, "{code}") {
				t.Errorf("DC description = %q", stored.Description)
			}

			// Transitions: To Do → Done is two hops away in the default workflow.
			_, err = s.c.TransitionTo(ctx, created.Key, jira.Target{StatusName: "Done", Resolution: "Done"})
			je := kindIs(t, err, jira.KindTransitionUnavailable)
			if !strings.Contains(je.Error(), `"To Do"`) || !strings.Contains(je.Error(), `"In Progress"`) {
				t.Errorf("unreachable error = %v", je)
			}
			res, err := s.c.TransitionTo(ctx, created.Key, jira.Target{CategoryKey: "indeterminate"})
			if err != nil || !res.Changed || res.To.Name != "In Progress" || res.MatchedBy != jira.MatchedByCategoryKey || res.TransitionID != jirasim.TransitionStartWork {
				t.Fatalf("start: %+v %v", res, err)
			}
			res, err = s.c.TransitionTo(ctx, created.Key, jira.Target{StatusID: jirasim.StatusDone, StatusName: "Done", CategoryKey: "done", Resolution: "Done"})
			if err != nil || !res.Changed || res.TransitionID != jirasim.TransitionResolve || !res.ResolutionSet || res.MatchedBy != jira.MatchedByStatusID {
				t.Fatalf("resolve: %+v %v", res, err)
			}
			if st, _ := s.srv.Issue(created.Key); st.Status != "Done" || st.Resolution != "Done" {
				t.Errorf("after resolve: %s / %s", st.Status, st.Resolution)
			}
			before := s.stats.ByOp()
			res, err = s.c.TransitionTo(ctx, created.Key, jira.Target{StatusName: "done"})
			after := s.stats.ByOp()
			if err != nil || res.Changed || after["transitions.get"] != before["transitions.get"] || after["transitions.do"] != before["transitions.do"] {
				t.Errorf("already done: %+v %v (%v → %v)", res, err, before, after)
			}
			// A done issue asked to be "Won't Do"-or-done by category stays put.
			res, err = s.c.TransitionTo(ctx, created.Key, jira.Target{StatusName: "Won't Do", CategoryKey: "done"})
			if err != nil || res.Changed || res.MatchedBy != jira.MatchedByCategoryKey {
				t.Errorf("category fallback: %+v %v", res, err)
			}
			// Reopen by category.
			res, err = s.c.TransitionTo(ctx, created.Key, jira.Target{CategoryKey: "new"})
			if err != nil || !res.Changed || res.To.ID != jirasim.StatusToDo {
				t.Errorf("reopen: %+v %v", res, err)
			}
		})
	}
}

func TestE2EDynamicWebhooks(t *testing.T) {
	srv := startSim(t, jirasim.Cloud)
	seedSmall(srv)
	s := cloudOAuthSite(t, srv, allScopes())
	ctx := context.Background()
	regs, err := s.c.RegisterWebhooks(ctx, "https://app.example.com/webhooks/jira/conn-1", []jira.WebhookSpec{
		{Events: []string{"jira:issue_created", "jira:issue_updated", "jira:issue_deleted"}, JQLFilter: `project = "SEC"`, FieldIDsFilter: []string{"status", "resolution"}},
		{Events: []string{"jira:issue_updated"}, JQLFilter: `labels = "security"`},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !regs[0].OK() || regs[1].OK() || len(regs[1].Errors) == 0 {
		t.Fatalf("registrations = %+v (labels are not allowed in dynamic webhook JQL)", regs)
	}
	hooks, err := s.c.ListWebhooks(ctx)
	if err != nil || len(hooks) != 1 || hooks[0].ID != regs[0].ID || hooks[0].Expiration.IsZero() {
		t.Fatalf("list = %+v, %v", hooks, err)
	}
	first := hooks[0].Expiration
	srv.AdvanceClock(10 * 24 * time.Hour)
	exp, err := s.c.RefreshWebhooks(ctx, []int64{regs[0].ID})
	if err != nil || !exp.After(first) {
		t.Fatalf("refresh = %v (was %v), %v", exp, first, err)
	}
	if err := s.c.DeleteWebhooks(ctx, []int64{regs[0].ID}); err != nil {
		t.Fatal(err)
	}
	if hooks, err := s.c.ListWebhooks(ctx); err != nil || len(hooks) != 0 {
		t.Fatalf("after delete = %+v, %v", hooks, err)
	}
	// An API-token connection is not an app.
	tok := cloudTokenSite(t, srv)
	_, err = tok.c.ListWebhooks(ctx)
	if je := kindIs(t, err, jira.KindForbidden); !strings.Contains(je.Error(), "isn't an app") {
		t.Errorf("err = %v", je)
	}
	// Without manage:jira-webhook the app may not register.
	ro := cloudOAuthSite(t, srv, jira.Scopes(jira.Features{}))
	_, err = ro.c.RegisterWebhooks(ctx, "https://app.example.com/x", []jira.WebhookSpec{{Events: []string{"jira:issue_updated"}, JQLFilter: `project = "SEC"`}})
	kindIs(t, err, jira.KindForbidden)
}

func TestE2EReconcileAfterCreate(t *testing.T) {
	srv := startSim(t, jirasim.Cloud)
	seedSmall(srv)
	s := cloudTokenSite(t, srv)
	ctx := context.Background()
	srv.SetSearchLag(time.Hour)
	created, err := s.c.CreateIssue(ctx, jira.IssueInput{Project: "OPS", IssueType: "Task", Summary: "fresh", Labels: []string{"fresh"}})
	if err != nil {
		t.Fatal(err)
	}
	q := mustJQL(t, jql.Query{Where: jql.And(jql.Eq("project", "OPS"), jql.Eq("labels", "fresh"))})
	page, err := s.c.Search(ctx, jira.SearchRequest{JQL: q})
	if err != nil || len(page.Issues) != 0 {
		t.Fatalf("lagging search saw %d issues, %v", len(page.Issues), err)
	}
	id, _ := strconv.ParseInt(created.ID, 10, 64)
	page, err = s.c.Search(ctx, jira.SearchRequest{JQL: q, ReconcileIssues: []int64{id}})
	if err != nil || len(page.Issues) != 1 || page.Issues[0].Key != created.Key {
		t.Fatalf("reconciled search = %+v, %v", page, err)
	}
}
