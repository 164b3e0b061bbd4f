package jira

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jira/adf"
)

// Response bodies in this file are Jira's documented or recorded shapes. Sources:
//   [spec]  Atlassian's Jira Cloud platform OpenAPI document, as quoted in JIRA-NOTES.md
//   [dc]    Jira Data Center REST reference examples
//   testdata/README.md for the recorded files.

func TestDecodeCloudSearchJQL(t *testing.T) {
	fs := newFixtureServer(t, map[string]canned{"POST /rest/api/3/search/jql": {body: readFixture(t, "cloud-search-jql.json")}})
	var stats CallStats
	c := newTestClient(t, Cloud, fs.URL, &stats)
	page, err := c.Search(context.Background(), SearchRequest{JQL: `project = "TES"`, Fields: []string{"summary", "status", "resolution", "resolutiondate", "labels", "priority", "issuetype", "created", "updated", "project", "assignee"}, MaxResults: 2})
	if err != nil {
		t.Fatal(err)
	}
	if page.IsLast || page.NextPageToken != "CAEaAggD" || page.Total != -1 || len(page.Issues) != 2 {
		t.Fatalf("page = %+v", page)
	}
	is := page.Issues[0]
	f := is.Fields
	if is.ID != "10040" || is.Key != "TES-41" || f.Summary != "Unit test summary 1" {
		t.Errorf("issue = %s %s %q", is.ID, is.Key, f.Summary)
	}
	if f.Status == nil || f.Status.ID != "10002" || f.Status.Category.Key != "done" || f.Status.Category.ID != 3 || f.Status.Category.Name != "Complete" {
		t.Errorf("status = %+v", f.Status)
	}
	if f.Resolution == nil || f.Resolution.Name != "Done" || f.Resolution.ID != "10000" {
		t.Errorf("resolution = %+v", f.Resolution)
	}
	wantRes := time.Date(2019, 2, 15, 19, 15, 40, 470e6, time.FixedZone("", -8*3600))
	if !f.ResolutionDate.Equal(wantRes) {
		t.Errorf("resolutiondate = %v, want %v", f.ResolutionDate, wantRes)
	}
	if f.Priority.Name != "High" || f.IssueType.Name != "Story" || f.Project.Key != "TES" || len(f.Labels) != 1 || f.Assignee != nil {
		t.Errorf("fields = %+v", f)
	}
	if string(is.Raw["customfield_10022"]) != `"0|i0000r:r"` {
		t.Errorf("raw custom field = %s", is.Raw["customfield_10022"])
	}
	if s := page.Issues[1].Fields; s.Status != nil || s.Resolution != nil {
		t.Errorf("null status/resolution decoded as %+v %+v", s.Status, s.Resolution)
	}
	// The request is the documented enhanced-search body.
	var body map[string]any
	if err := json.Unmarshal([]byte(fs.requests()[0].body), &body); err != nil {
		t.Fatal(err)
	}
	if body["jql"] != `project = "TES"` || body["maxResults"] != float64(2) || len(body["fields"].([]any)) != 11 {
		t.Errorf("request body = %v", body)
	}
	if _, ok := body["startAt"]; ok {
		t.Error("Cloud search must not send startAt")
	}
	if stats.ByOp()["search"] != 1 {
		t.Errorf("stats = %v", stats.ByOp())
	}
}

func TestDecodeDCSearch(t *testing.T) {
	fs := newFixtureServer(t, map[string]canned{"POST /jira/rest/api/2/search": {body: readFixture(t, "dc-search.json")}})
	c := newTestClient(t, DataCenter, fs.URL+"/jira", nil)
	page, err := c.Search(context.Background(), SearchRequest{JQL: `project = "TES"`, Fields: []string{"status"}})
	if err != nil {
		t.Fatal(err)
	}
	if !page.IsLast || page.Total != 1 || page.Issues[0].Key != "TES-4" || page.Issues[0].Fields.Status.Name != "Resolved" {
		t.Fatalf("page = %+v", page)
	}
	if got := fs.requests()[0].auth; got != "Bearer "+testToken {
		t.Errorf("DC auth header = %q", got)
	}
}

func TestDecodeCountsAndMyself(t *testing.T) {
	fs := newFixtureServer(t, map[string]canned{
		// [spec] PageBeanProject example (JIRA-NOTES.md §3.4).
		"GET /rest/api/3/project/search": {body: `{"isLast":false,"maxResults":2,"nextPage":"https://your-domain.atlassian.net/rest/api/3/project/search?startAt=2&maxResults=2","self":"https://your-domain.atlassian.net/rest/api/3/project/search?startAt=0&maxResults=2","startAt":0,"total":7,"values":[{"id":"10000","key":"EX","name":"Example"}]}`},
		// [spec] approximate-count example (§3.3).
		"POST /rest/api/3/search/approximate-count": {body: `{"count":153}`},
		// [spec] GET myself example (Cloud).
		"GET /rest/api/3/myself": {body: `{"accountId":"5b10a2844c20165700ede21g","accountType":"atlassian","active":true,"displayName":"Mia Krystof","emailAddress":"mia@example.com","self":"https://your-domain.atlassian.net/rest/api/3/user?accountId=5b10a2844c20165700ede21g","timeZone":"Australia/Sydney"}`},
		// [dc] GET myself example.
		"GET /rest/api/2/myself":  {body: `{"self":"http://www.example.com/jira/rest/api/2/user?username=fred","key":"fred","name":"fred","emailAddress":"fred@example.com","displayName":"Fred F. User","active":true,"timeZone":"Australia/Sydney"}`},
		"GET /rest/api/2/project": {body: `[{"self":"http://www.example.com/jira/rest/api/2/project/EX","id":"10000","key":"EX","name":"Example"},{"self":"http://www.example.com/jira/rest/api/2/project/ABC","id":"10001","key":"ABC","name":"Alphabetical"}]`},
		"POST /rest/api/2/search": {body: `{"startAt":0,"maxResults":0,"total":4242,"issues":[]}`},
	})
	ctx := context.Background()
	var stats CallStats
	cloud := newTestClient(t, Cloud, fs.URL, &stats)
	if n, err := cloud.ProjectCount(ctx); err != nil || n != 7 {
		t.Errorf("ProjectCount = %d, %v", n, err)
	}
	if n, err := cloud.ApproximateCount(ctx, `project = "EX"`); err != nil || n != 153 {
		t.Errorf("ApproximateCount = %d, %v", n, err)
	}
	if u, err := cloud.Myself(ctx); err != nil || u.AccountID != "5b10a2844c20165700ede21g" || u.Email != "mia@example.com" {
		t.Errorf("Myself = %+v, %v", u, err)
	}
	dc := newTestClient(t, DataCenter, fs.URL, &stats)
	if n, err := dc.ProjectCount(ctx); err != nil || n != 2 {
		t.Errorf("DC ProjectCount = %d, %v", n, err)
	}
	if n, err := dc.ApproximateCount(ctx, `project = "EX"`); err != nil || n != 4242 {
		t.Errorf("DC count = %d, %v", n, err)
	}
	if u, err := dc.Myself(ctx); err != nil || u.Name != "fred" || u.Key != "fred" {
		t.Errorf("DC Myself = %+v, %v", u, err)
	}
	reqs := fs.requests()
	if reqs[0].query != "maxResults=1" {
		t.Errorf("project search query = %q", reqs[0].query)
	}
	var dcBody map[string]any
	_ = json.Unmarshal([]byte(reqs[4].body), &dcBody)
	if dcBody["maxResults"] != float64(0) {
		t.Errorf("DC count body = %v", dcBody)
	}
	if stats.Total() != 6 {
		t.Errorf("stats = %v", stats.ByOp())
	}
}

func TestDecodeCreateMeta(t *testing.T) {
	for _, tc := range []struct {
		flavor Flavor
		prefix string
		file   string
	}{{Cloud, "/rest/api/3", "cloud-createmeta-fields.json"}, {DataCenter, "/rest/api/2", "dc-createmeta-fields.json"}} {
		t.Run(string(tc.flavor), func(t *testing.T) {
			fs := newFixtureServer(t, map[string]canned{
				// [spec] createmeta issue types example shape (JIRA-NOTES.md §4.3).
				"GET " + tc.prefix + "/issue/createmeta/KT/issuetypes":       {body: `{"issueTypes":[{"description":"A task that needs to be done.","iconUrl":"https://mmtest.atlassian.net/secure/viewavatar?size=medium&avatarId=10318&avatarType=issuetype","id":"10002","name":"Task","self":"https://mmtest.atlassian.net/rest/api/2/issuetype/10002","subtask":false}],"maxResults":50,"startAt":0,"total":1}`},
				"GET " + tc.prefix + "/issue/createmeta/KT/issuetypes/10002": {body: readFixture(t, tc.file)},
			})
			c := newTestClient(t, tc.flavor, fs.URL, nil)
			ctx := context.Background()
			fields, err := c.CreateFields(ctx, "KT", "10002")
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]FieldKind{}
			for _, f := range fields {
				kinds[f.FieldID] = f.Kind()
			}
			want := map[string]FieldKind{
				"customfield_10068": FieldKindMultiSelect, "customfield_10075": FieldKindMultiSelect,
				"customfield_10073": FieldKindSelect, "customfield_10076": FieldKindSelect,
				"customfield_10071": FieldKindLabels, "labels": FieldKindLabels,
				"customfield_10077": FieldKindTextArea, "customfield_10078": FieldKindText,
				"customfield_10074": FieldKindOther, "assignee": FieldKindOther,
			}
			for id, k := range want {
				if kinds[id] != k {
					t.Errorf("%s kind = %q, want %q", id, kinds[id], k)
				}
			}
			rep, err := c.ValidateCreateConfig(ctx, CreateConfig{
				Project: "KT", IssueType: "task",
				CustomFields: map[string]string{"framework_refs": "customfield_10075", "finding_id": "customfield_10099"},
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.IssueType.ID != "10002" || rep.Fields["framework_refs"].Kind() != FieldKindMultiSelect {
				t.Errorf("report = %+v", rep)
			}
			codes := map[ProblemCode][]string{}
			for _, p := range rep.Problems {
				codes[p.Code] = append(codes[p.Code], p.FieldID)
			}
			// description is required without default; priority is required but has one.
			if strings.Join(codes[ProblemRequiredUnfilled], ",") != "description" || strings.Join(codes[ProblemCustomFieldUnknown], ",") != "customfield_10099" || len(rep.Problems) != 2 {
				t.Errorf("problems = %+v", rep.Problems)
			}
			if KindOf(rep.Err()) != KindConfig {
				t.Errorf("report error kind = %q", KindOf(rep.Err()))
			}
			rep, err = c.ValidateCreateConfig(ctx, CreateConfig{Project: "KT", IssueType: "10002", ProvidedFields: []string{"description"}})
			if err != nil || !rep.OK() || rep.Err() != nil {
				t.Errorf("valid config reported %+v, %v", rep, err)
			}
			rep, err = c.ValidateCreateConfig(ctx, CreateConfig{Project: "KT", IssueType: "Vulnerability"})
			if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Code != ProblemIssueTypeNotFound || !strings.Contains(rep.Problems[0].Message, "Task (10002)") {
				t.Errorf("missing issue type reported %+v, %v", rep, err)
			}
		})
	}
}

func TestDecodeTransitionsAndChooseByTarget(t *testing.T) {
	// [spec] transitions example: transition "Close Issue" goes to "In Progress" and
	// "Crystallize" to "Resolved" — names say nothing about targets. The last entry has no
	// "to", as in real data (JIRA-NOTES.md §5.1).
	transitions := `{"expand":"transitions","transitions":[
	 {"fields":{"summary":{"allowedValues":["Will","Won't"],"defaultValue":"Will","hasDefaultValue":true,"key":"summary","name":"Summary","operations":["set"],"required":false,"schema":{"custom":"com.atlassian.jira.plugin.system.customfieldtypes:multiselect","customId":10001,"items":"option","type":"array"}}},"hasScreen":false,"id":"2","isAvailable":true,"isConditional":false,"isGlobal":false,"isInitial":false,"name":"Close Issue","to":{"description":"This issue is being actively worked on at the moment by the assignee.","iconUrl":"https://your-domain.atlassian.net/images/icons/statuses/inprogress.png","id":"10000","name":"In Progress","self":"https://your-domain.atlassian.net/rest/api/3/status/10000","statusCategory":{"colorName":"yellow","id":1,"key":"in-flight","name":"In Progress","self":"https://your-domain.atlassian.net/rest/api/3/statuscategory/1"}}},
	 {"fields":{"resolution":{"key":"resolution","name":"Resolution","required":true,"hasDefaultValue":false,"operations":["set"],"schema":{"system":"resolution","type":"resolution"},"allowedValues":[{"id":"10000","name":"Done"}]}},"hasScreen":true,"id":"711","isAvailable":true,"isConditional":false,"isGlobal":false,"isInitial":false,"name":"Crystallize","to":{"description":"This issue was once resolved, but the resolution was deemed incorrect.","iconUrl":"https://your-domain.atlassian.net/images/icons/statuses/reopened.png","id":"5","name":"Resolved","self":"https://your-domain.atlassian.net/rest/api/3/status/5","statusCategory":{"colorName":"green","id":9,"key":"completed","name":"Resolved","self":"https://your-domain.atlassian.net/rest/api/3/statuscategory/9"}}},
	 {"id":"900","name":"Kicked","hasScreen":false}]}`
	fs := newFixtureServer(t, map[string]canned{
		"GET /rest/api/3/issue/ED-1":              {body: `{"id":"10002","key":"ED-1","fields":{"status":{"id":"3","name":"Open","statusCategory":{"id":2,"key":"new","name":"To Do"}}}}`},
		"GET /rest/api/3/issue/ED-1/transitions":  {body: transitions},
		"POST /rest/api/3/issue/ED-1/transitions": {status: 204},
	})
	var stats CallStats
	c := newTestClient(t, Cloud, fs.URL, &stats)
	ctx := context.Background()
	ts, err := c.Transitions(ctx, "ED-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 3 || ts[2].To != nil || ts[1].Fields["resolution"].Required != true || ts[0].To.Category.Key != "in-flight" {
		t.Fatalf("transitions = %+v", ts)
	}
	if fs.requests()[0].query != "expand=transitions.fields" {
		t.Errorf("query = %q", fs.requests()[0].query)
	}
	// Target "Close Issue"-like name must not match by transition name.
	if _, err := c.TransitionTo(ctx, "ED-1", Target{StatusName: "Close Issue"}); KindOf(err) != KindTransitionUnavailable || !strings.Contains(err.Error(), `"Open"`) || !strings.Contains(err.Error(), `"Resolved"`) {
		t.Errorf("err = %v", err)
	}
	res, err := c.TransitionTo(ctx, "ED-1", Target{StatusName: "resolved", Resolution: "Done"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.TransitionID != "711" || res.MatchedBy != MatchedByStatusName || !res.ResolutionSet || res.To.ID != "5" {
		t.Errorf("result = %+v", res)
	}
	reqs := fs.requests()
	last := reqs[len(reqs)-1]
	if last.method != "POST" || last.body != `{"fields":{"resolution":{"name":"Done"}},"transition":{"id":"711"}}` {
		t.Errorf("transition request = %+v", last)
	}
	// By id; resolution not on that screen → not sent.
	res, err = c.TransitionTo(ctx, "ED-1", Target{StatusID: "10000", Resolution: "Done"})
	if err != nil || res.TransitionID != "2" || res.ResolutionSet {
		t.Errorf("by id: %+v %v", res, err)
	}
	reqs = fs.requests()
	if b := reqs[len(reqs)-1].body; b != `{"transition":{"id":"2"}}` {
		t.Errorf("body = %s", b)
	}
	// Already there: one GET, no transition calls.
	before := stats.Total()
	res, err = c.TransitionTo(ctx, "ED-1", Target{StatusName: "OPEN"})
	if err != nil || res.Changed || res.MatchedBy != MatchedByStatusName || stats.Total()-before != 1 {
		t.Errorf("already there: %+v %v (calls %d)", res, err, stats.Total()-before)
	}
	before = stats.Total()
	res, err = c.TransitionTo(ctx, "ED-1", Target{CategoryKey: "new"})
	if err != nil || res.Changed || stats.Total()-before != 1 {
		t.Errorf("already in category: %+v %v", res, err)
	}
}

func TestDecodeWebhookResponses(t *testing.T) {
	fs := newFixtureServer(t, map[string]canned{
		// [spec] register example: per-item results, HTTP 200 even though one failed.
		"POST /rest/api/3/webhook": {body: `{"webhookRegistrationResult":[{"createdWebhookId":1000},{"errors":["The clause watchCount is unsupported"]},{"createdWebhookId":1001}]}`},
		// [spec] example shows a timestamp string although the schema says int64.
		"PUT /rest/api/3/webhook/refresh": {body: `{"expirationDate":"2019-06-01T12:42:30.000+0000"}`},
		"GET /rest/api/3/webhook":         {body: `{"isLast":true,"maxResults":3,"startAt":0,"total":2,"values":[{"events":["jira:issue_updated","jira:issue_created"],"expirationDate":"2019-06-01T12:42:30.000+0000","fieldIdsFilter":["summary","customfield_10029"],"id":10000,"jqlFilter":"project = PRJ"},{"events":["jira:issue_deleted"],"expirationDate":1559392950000,"id":10001,"jqlFilter":"project IN (PRJ, EXP) AND status = done"}]}`},
		"DELETE /rest/api/3/webhook":      {status: 202},
	})
	c := newTestClient(t, Cloud, fs.URL, nil)
	ctx := context.Background()
	specs := []WebhookSpec{
		{Events: []string{"jira:issue_created", "jira:issue_updated"}, JQLFilter: "project = PROJ", FieldIDsFilter: []string{"status"}},
		{Events: []string{"jira:issue_updated"}, JQLFilter: "watchCount > 1"},
		{Events: []string{"jira:issue_deleted"}, JQLFilter: "project = PROJ"},
	}
	regs, err := c.RegisterWebhooks(ctx, "https://app.example.com/webhooks/jira/x", specs)
	if err != nil {
		t.Fatal(err)
	}
	if !regs[0].OK() || regs[0].ID != 1000 || regs[1].OK() || regs[1].Errors[0] != "The clause watchCount is unsupported" || regs[2].ID != 1001 {
		t.Errorf("registrations = %+v", regs)
	}
	exp, err := c.RefreshWebhooks(ctx, []int64{1000, 1001})
	want := time.Date(2019, 6, 1, 12, 42, 30, 0, time.UTC)
	if err != nil || !exp.Equal(want) {
		t.Errorf("refresh = %v, %v", exp, err)
	}
	hooks, err := c.ListWebhooks(ctx)
	if err != nil || len(hooks) != 2 || !hooks[0].Expiration.Equal(want) || !hooks[1].Expiration.Equal(time.UnixMilli(1559392950000)) || hooks[0].FieldIDsFilter[1] != "customfield_10029" {
		t.Errorf("list = %+v, %v", hooks, err)
	}
	if err := c.DeleteWebhooks(ctx, []int64{1000}); err != nil {
		t.Error(err)
	}
	reqs := fs.requests()
	if reqs[1].body != `{"webhookIds":[1000,1001]}` || reqs[3].body != `{"webhookIds":[1000]}` {
		t.Errorf("bodies = %q / %q", reqs[1].body, reqs[3].body)
	}
	// Data Center has no dynamic webhooks.
	dc := newTestClient(t, DataCenter, fs.URL, nil)
	if _, err := dc.ListWebhooks(ctx); KindOf(err) != KindUnsupported {
		t.Errorf("DC list err = %v", err)
	}
	// Both expirationDate encodings.
	fs.routes["PUT /rest/api/3/webhook/refresh"] = canned{body: `{"expirationDate":1559392950000}`}
	if exp, err := c.RefreshWebhooks(ctx, []int64{1}); err != nil || !exp.Equal(time.UnixMilli(1559392950000)) {
		t.Errorf("ms refresh = %v, %v", exp, err)
	}
	fs.routes["PUT /rest/api/3/webhook/refresh"] = canned{body: `{"expirationDate":"next tuesday"}`}
	if _, err := c.RefreshWebhooks(ctx, []int64{1}); KindOf(err) != KindMalformedResponse {
		t.Errorf("bad date err = %v", err)
	}
}

func TestCreateIssueRequestShapes(t *testing.T) {
	fs := newFixtureServer(t, map[string]canned{
		// [spec] create issue 201 example.
		"POST /rest/api/3/issue": {status: 201, body: `{"id":"10000","key":"ED-24","self":"https://your-domain.atlassian.net/rest/api/3/issue/10000","transition":{"status":200,"errorCollection":{"errorMessages":[],"errors":{}}}}`},
		"POST /rest/api/2/issue": {status: 201, body: `{"id":"10000","key":"ED-24","self":"http://www.example.com/jira/rest/api/2/issue/10000"}`},
	})
	in := IssueInput{
		Project: "ED", IssueType: "10004", Summary: "SQL injection in /login\nsecond line", Priority: "2",
		Description: adf.NewDoc(adf.Paragraph(adf.Text("Order entry fails when *selecting* supplier."))),
		Labels:      []string{"security", "scanner"},
		CustomFields: map[string]FieldValue{
			"customfield_10100": MultiSelect("SOC2", "ISO27001"),
			"customfield_10101": LabelsValue("probe-sqli"),
			"customfield_10102": TextValue("finding-42"),
			"customfield_10103": TextAreaValue(adf.NewDoc(adf.Paragraph(adf.Text("excerpt [x|http://evil]")))),
			"customfield_10104": SingleSelect("red"),
		},
	}
	ctx := context.Background()
	cloud := newTestClient(t, Cloud, fs.URL, nil)
	created, err := cloud.CreateIssue(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if created.Key != "ED-24" || created.ID != "10000" || created.BrowseURL != fs.URL+"/browse/ED-24" {
		t.Errorf("created = %+v", created)
	}
	dc := newTestClient(t, DataCenter, fs.URL, nil)
	if _, err := dc.CreateIssue(ctx, in); err != nil {
		t.Fatal(err)
	}
	reqs := fs.requests()
	wantCloud := `{"fields":{"customfield_10100":[{"value":"SOC2"},{"value":"ISO27001"}],"customfield_10101":["probe-sqli"],"customfield_10102":"finding-42","customfield_10103":{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"excerpt [x|http://evil]"}]}]},"customfield_10104":{"value":"red"},"description":{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"Order entry fails when *selecting* supplier."}]}]},"issuetype":{"id":"10004"},"labels":["security","scanner"],"priority":{"id":"2"},"project":{"key":"ED"},"summary":"SQL injection in /login second line"}}`
	if reqs[0].body != wantCloud {
		t.Errorf("cloud body\n got %s\nwant %s", reqs[0].body, wantCloud)
	}
	wantDC := `{"fields":{"customfield_10100":[{"value":"SOC2"},{"value":"ISO27001"}],"customfield_10101":["probe-sqli"],"customfield_10102":"finding-42","customfield_10103":"excerpt &#91;x&#124;http&#58;//evil&#93;","customfield_10104":{"value":"red"},"description":"Order entry fails when \\*selecting\\* supplier.","issuetype":{"id":"10004"},"labels":["security","scanner"],"priority":{"id":"2"},"project":{"key":"ED"},"summary":"SQL injection in /login second line"}}`
	if reqs[1].body != wantDC {
		t.Errorf("dc body\n got %s\nwant %s", reqs[1].body, wantDC)
	}
	// Invalid input never reaches Jira.
	for name, bad := range map[string]IssueInput{
		"no summary":      {Project: "ED", IssueType: "Bug", Summary: " \n "},
		"bad project":     {Project: "ED/../x", IssueType: "Bug", Summary: "s"},
		"label space":     {Project: "ED", IssueType: "Bug", Summary: "s", Labels: []string{"a b"}},
		"bad cf id":       {Project: "ED", IssueType: "Bug", Summary: "s", CustomFields: map[string]FieldValue{"summary": TextValue("x")}},
		"empty select":    {Project: "ED", IssueType: "Bug", Summary: "s", CustomFields: map[string]FieldValue{"customfield_1": MultiSelect()}},
		"nil textarea":    {Project: "ED", IssueType: "Bug", Summary: "s", CustomFields: map[string]FieldValue{"customfield_1": TextAreaValue(nil)}},
		"no issue type":   {Project: "ED", Summary: "s"},
		"nil field value": {Project: "ED", IssueType: "Bug", Summary: "s", CustomFields: map[string]FieldValue{"customfield_1": nil}},
	} {
		n := len(fs.requests())
		if _, err := cloud.CreateIssue(ctx, bad); KindOf(err) != KindBadRequest || len(fs.requests()) != n {
			t.Errorf("%s: err = %v, requests %d→%d", name, err, n, len(fs.requests()))
		}
	}
	long := strings.Repeat("é", 300)
	if got := singleLine(long, 255); len([]rune(got)) != 255 || !strings.HasSuffix(got, "…") {
		t.Errorf("singleLine length %d", len([]rune(got)))
	}
}

func TestMalformedSuccessBodies(t *testing.T) {
	for name, body := range map[string]string{
		"not json":      `<html>login</html>`,
		"truncated":     `{"issues":[{"id":"1","key":"A-1","fields":{"summary":`,
		"wrong type":    `{"issues":{"id":"1"}}`,
		"no issues":     `{"isLast":true}`,
		"bad status":    `{"issues":[{"id":"1","key":"A-1","fields":{"status":"Done"}}],"isLast":true}`,
		"bad timestamp": `{"issues":[{"id":"1","key":"A-1","fields":{"created":"yesterday"}}],"isLast":true}`,
		"empty":         ``,
		"null":          `null`,
	} {
		t.Run(name, func(t *testing.T) {
			fs := newFixtureServer(t, map[string]canned{"POST /rest/api/3/search/jql": {body: body}})
			c := newTestClient(t, Cloud, fs.URL, nil)
			_, err := c.Search(context.Background(), SearchRequest{JQL: "project = A"})
			if KindOf(err) != KindMalformedResponse {
				t.Fatalf("err = %v", err)
			}
		})
	}
	fs := newFixtureServer(t, map[string]canned{
		"GET /rest/api/3/project/search":            {body: `{"values":[]}`},
		"POST /rest/api/3/search/approximate-count": {body: `{"count":-1}`},
		"GET /rest/api/3/myself":                    {body: `{}`},
	})
	c := newTestClient(t, Cloud, fs.URL, nil)
	ctx := context.Background()
	if _, err := c.ProjectCount(ctx); KindOf(err) != KindMalformedResponse {
		t.Errorf("missing total: %v", err)
	}
	if _, err := c.ApproximateCount(ctx, "project = A"); KindOf(err) != KindMalformedResponse {
		t.Errorf("negative count: %v", err)
	}
	if _, err := c.Myself(ctx); KindOf(err) != KindMalformedResponse {
		t.Errorf("empty user: %v", err)
	}
}

func TestResponseSizeLimit(t *testing.T) {
	big := `{"count":1,"pad":"` + strings.Repeat("x", 4096) + `"}`
	fs := newFixtureServer(t, map[string]canned{"POST /rest/api/3/search/approximate-count": {body: big}})
	c, err := New(Config{Flavor: Cloud, BaseURL: fs.URL, Auth: APIToken(testEmail, NewSecret(testToken)), MaxResponseBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ApproximateCount(context.Background(), "project = A")
	var je *Error
	if !errors.As(err, &je) || je.Kind != KindResponseTooLarge || je.Status != 200 {
		t.Fatalf("err = %v", err)
	}
	c2, _ := New(Config{Flavor: Cloud, BaseURL: fs.URL, Auth: APIToken(testEmail, NewSecret(testToken)), MaxResponseBytes: int64(len(big))})
	if n, err := c2.ApproximateCount(context.Background(), "project = A"); err != nil || n != 1 {
		t.Fatalf("at the limit: %d, %v", n, err)
	}
}
