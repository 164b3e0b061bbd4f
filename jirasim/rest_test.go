package jirasim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

func createBody(fields map[string]any) map[string]any {
	base := map[string]any{"project": map[string]string{"key": "SEC"}, "issuetype": map[string]string{"name": "Bug"}, "summary": "SQL injection in /login"}
	for k, v := range fields {
		if v == nil {
			delete(base, k)
			continue
		}
		base[k] = v
	}
	return map[string]any{"fields": base}
}

func TestMyselfAndProjects(t *testing.T) {
	f := newCloud(t, jirasim.Options{})
	me := call(t, "GET", f.v3("myself"), f.a, nil).json(t)
	if me["emailAddress"] != "admin@example.com" || me["accountId"] == "" {
		t.Fatalf("myself %v", me)
	}
	r := call(t, "GET", f.v3("myself"), basic("admin@example.com", "wrong"), nil)
	wantStatus(t, r, 401)
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("401 content type %q", r.header.Get("Content-Type"))
	}
	for i := range 150 {
		if _, err := f.srv.AddProject(jirasim.ProjectSpec{Key: fmt.Sprintf("PRJ%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	page := call(t, "GET", f.v3("project/search?maxResults=500"), f.a, nil).json(t)
	if page["total"].(float64) != 151 || page["maxResults"].(float64) != 100 || len(page["values"].([]any)) != 100 || page["isLast"] != false {
		t.Fatalf("project page: total=%v max=%v n=%d isLast=%v", page["total"], page["maxResults"], len(page["values"].([]any)), page["isLast"])
	}
	last := call(t, "GET", f.v3("project/search?startAt=150&maxResults=50"), f.a, nil).json(t)
	if last["isLast"] != true || len(last["values"].([]any)) != 1 {
		t.Fatalf("last page %v", last)
	}
}

func TestSearchJQLPagingAndErrors(t *testing.T) {
	f := newCloud(t, jirasim.Options{})
	for i := range 7 {
		if _, err := f.srv.AddIssue(jirasim.IssueSpec{Project: "SEC", IssueType: "Bug", Summary: fmt.Sprintf("finding %d", i), Labels: []string{"security"}, Silent: true}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	token := ""
	pages := 0
	for {
		body := map[string]any{"jql": "project = SEC ORDER BY key ASC", "maxResults": 3}
		if token != "" {
			body["nextPageToken"] = token
		}
		p := call(t, "POST", f.v3("search/jql"), f.a, body).json(t)
		pages++
		if _, has := p["total"]; has {
			t.Fatal("search/jql must not return total")
		}
		for _, is := range p["issues"].([]any) {
			m := is.(map[string]any)
			if len(m) != 1 || m["id"] == nil {
				t.Fatalf("default fields must be id only, got %v", m)
			}
			keys = append(keys, m["id"].(string))
		}
		if p["isLast"] == true {
			if _, has := p["nextPageToken"]; has {
				t.Fatal("last page carries nextPageToken")
			}
			break
		}
		token = p["nextPageToken"].(string)
	}
	if pages != 3 || len(keys) != 7 {
		t.Fatalf("pages=%d ids=%v", pages, keys)
	}

	// GET with fields.
	g := call(t, "GET", f.v3("search/jql?jql=key%3DSEC-2&fields=summary,status,labels"), f.a, nil).json(t)
	is := g["issues"].([]any)[0].(map[string]any)
	fields := is["fields"].(map[string]any)
	if is["key"] != "SEC-2" || fields["summary"] != "finding 1" || fields["status"].(map[string]any)["statusCategory"].(map[string]any)["key"] != "new" {
		t.Fatalf("issue %v", is)
	}
	if _, has := fields["resolution"]; has {
		t.Fatal("unrequested field rendered")
	}

	for _, jql := range []string{"", "ORDER BY created DESC", "order by key desc"} {
		r := call(t, "POST", f.v3("search/jql"), f.a, map[string]any{"jql": jql})
		wantStatus(t, r, 400)
		if msgs := r.errorMessages(t); len(msgs) != 1 || !strings.HasPrefix(msgs[0].(string), "Unbounded JQL queries are not allowed here") {
			t.Fatalf("unbounded %q → %s", jql, r.body)
		}
	}
	bad := call(t, "POST", f.v3("search/jql"), f.a, map[string]any{"jql": "project = SEC AND"})
	wantStatus(t, bad, 400)
	if msg := bad.errorMessages(t)[0].(string); !strings.Contains(msg, "Error in the JQL Query") {
		t.Fatalf("parse error message %q", msg)
	}
	wantStatus(t, call(t, "POST", f.v3("search/jql"), f.a, map[string]any{"jql": "project = NOPE"}), 400)
	wantStatus(t, call(t, "POST", f.v3("search/jql"), f.a, map[string]any{"jql": "project = SEC", "nextPageToken": "garbage"}), 400)

	cnt := call(t, "POST", f.v3("search/approximate-count"), f.a, map[string]any{"jql": "project = SEC AND labels = security"}).json(t)
	if cnt["count"].(float64) != 7 {
		t.Fatalf("count %v", cnt)
	}
	wantStatus(t, call(t, "POST", f.v3("search/approximate-count"), f.a, map[string]any{"jql": ""}), 400)

	for _, v := range []string{"2", "3"} {
		r := call(t, "GET", f.srv.URL+"/rest/api/"+v+"/search?jql=project%3DSEC", f.a, nil)
		wantStatus(t, r, http.StatusGone)
		if msg := r.errorMessages(t)[0].(string); !strings.HasPrefix(msg, "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API.") {
			t.Fatalf("410 body %s", r.body)
		}
	}
}

func TestSearchLagAndReconcile(t *testing.T) {
	f := newCloud(t, jirasim.Options{})
	old, err := f.srv.AddIssue(jirasim.IssueSpec{Project: "SEC", Summary: "old", Silent: true})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.AdvanceClock(time.Hour)
	f.srv.SetSearchLag(30 * time.Second)
	created := call(t, "POST", f.v3("issue"), f.a, createBody(nil))
	wantStatus(t, created, 201)
	newID := created.json(t)["id"].(string)

	ids := func(body map[string]any) []string {
		p := call(t, "POST", f.v3("search/jql"), f.a, body).json(t)
		var out []string
		for _, is := range p["issues"].([]any) {
			out = append(out, is.(map[string]any)["id"].(string))
		}
		return out
	}
	if got := ids(map[string]any{"jql": "project = SEC"}); len(got) != 1 || got[0] != old.ID {
		t.Fatalf("lagged search sees %v", got)
	}
	var idNum int64
	if err := json.Unmarshal([]byte(newID), &idNum); err != nil {
		t.Fatal(err)
	}
	if got := ids(map[string]any{"jql": "project = SEC", "reconcileIssues": []int64{idNum}}); len(got) != 2 {
		t.Fatalf("reconciled search sees %v", got)
	}
	if c := call(t, "POST", f.v3("search/approximate-count"), f.a, map[string]any{"jql": "project = SEC"}).json(t)["count"].(float64); c != 1 {
		t.Fatalf("lagged count %v", c)
	}
	f.srv.AdvanceClock(31 * time.Second)
	if got := ids(map[string]any{"jql": "project = SEC"}); len(got) != 2 {
		t.Fatalf("after lag: %v", got)
	}
}

func TestGetIssue(t *testing.T) {
	f := newCloud(t, jirasim.Options{})
	is, err := f.srv.AddIssue(jirasim.IssueSpec{Project: "SEC", IssueType: "Vulnerability", Summary: "XSS", Description: "line one\nline two", Silent: true})
	if err != nil {
		t.Fatal(err)
	}
	v3 := call(t, "GET", f.v3("issue/"+is.Key), f.a, nil).json(t)
	desc := v3["fields"].(map[string]any)["description"].(map[string]any)
	if desc["type"] != "doc" {
		t.Fatalf("v3 description %v", desc)
	}
	v2 := call(t, "GET", f.srv.URL+"/rest/api/2/issue/"+is.ID+"?fields=description,created", f.a, nil).json(t)
	fields := v2["fields"].(map[string]any)
	if fields["description"] != "line one\nline two" {
		t.Fatalf("v2 description %v", fields["description"])
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000-0700", fields["created"].(string)); err != nil {
		t.Fatalf("created %v: %v", fields["created"], err)
	}
	r := call(t, "GET", f.v3("issue/SEC-999"), f.a, nil)
	wantStatus(t, r, 404)
	if r.errorMessages(t)[0] != "Issue does not exist or you do not have permission to see it." {
		t.Fatalf("404 body %s", r.body)
	}
}

func TestCreateIssueValidation(t *testing.T) {
	f := newCloud(t, jirasim.Options{})
	ok := call(t, "POST", f.v3("issue"), f.a, createBody(map[string]any{
		"description":                    adfDoc("found by scanner"),
		"labels":                         []string{"security", "scanner"},
		"priority":                       map[string]string{"name": "High"},
		jirasim.FieldFrameworkReferences: []map[string]string{{"value": "SOC 2 CC8.1"}, {"value": "ISO 27001 A.8.32"}},
		jirasim.FieldSecurityLabels:      []string{"sast"},
		jirasim.FieldFindingID:           "F-123",
		jirasim.FieldFindingDetails:      adfDoc("details"),
	}))
	wantStatus(t, ok, 201)
	m := ok.json(t)
	if m["key"] != "SEC-1" || !strings.HasSuffix(m["self"].(string), "/rest/api/3/issue/"+m["id"].(string)) {
		t.Fatalf("create response %v", m)
	}
	is, _ := f.srv.Issue("SEC-1")
	if is.Priority != "High" || len(is.Labels) != 2 || is.Description != "found by scanner" || is.CustomFields[jirasim.FieldFindingID] != "F-123" {
		t.Fatalf("stored issue %+v", is)
	}
	refs := is.CustomFields[jirasim.FieldFrameworkReferences].([]map[string]string)
	if len(refs) != 2 || refs[0]["value"] != "SOC 2 CC8.1" {
		t.Fatalf("framework refs %v", refs)
	}

	cases := []struct {
		name   string
		fields map[string]any
		field  string
		msg    string
	}{
		{"string description on v3", map[string]any{"description": "plain"}, "description", "Operation value must be an Atlassian Document (see the Atlassian Document Format)"},
		{"string textarea on v3", map[string]any{jirasim.FieldFindingDetails: "plain"}, jirasim.FieldFindingDetails, "Operation value must be an Atlassian Document (see the Atlassian Document Format)"},
		{"unknown custom field", map[string]any{"customfield_10099": "x"}, "customfield_10099", "Field 'customfield_10099' cannot be set. It is not on the appropriate screen, or unknown."},
		{"bad option", map[string]any{jirasim.FieldFrameworkReferences: []map[string]string{{"value": "HIPAA"}}}, jirasim.FieldFrameworkReferences, "Option value 'HIPAA' is not valid"},
		{"option not array", map[string]any{jirasim.FieldFrameworkReferences: map[string]string{"value": "SOC 2 CC8.1"}}, jirasim.FieldFrameworkReferences, "data was not an array"},
		{"label with space", map[string]any{"labels": []string{"two words"}}, "labels", "The label 'two words' contains spaces which is invalid."},
		{"missing summary", map[string]any{"summary": nil}, "summary", "You must specify a summary of the issue."},
		{"missing issuetype", map[string]any{"issuetype": nil}, "issuetype", "issue type is required"},
		{"bad issuetype", map[string]any{"issuetype": map[string]string{"id": "99999"}}, "issuetype", "valid issue type is required"},
		{"bad project", map[string]any{"project": map[string]string{"key": "NOPE"}}, "project", "valid project is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, "POST", f.v3("issue"), f.a, createBody(tc.fields))
			wantStatus(t, r, 400)
			if got := r.fieldErrors(t)[tc.field]; got != tc.msg {
				t.Fatalf("errors[%s] = %v, want %q (body %s)", tc.field, got, tc.msg, r.body)
			}
		})
	}

	// Option by id works; required fields are enforced.
	var optID string
	for _, cf := range f.srv.CustomFields() {
		if cf.ID == jirasim.FieldFrameworkReferences {
			optID = cf.Options[0].ID
		}
	}
	if err := f.srv.SetFieldRequired("SEC", "Bug", jirasim.FieldFindingID, true); err != nil {
		t.Fatal(err)
	}
	r := call(t, "POST", f.v3("issue"), f.a, createBody(map[string]any{jirasim.FieldFrameworkReferences: []map[string]string{{"id": optID}}}))
	wantStatus(t, r, 400)
	if got := r.fieldErrors(t)[jirasim.FieldFindingID]; got != "Finding ID is required." {
		t.Fatalf("required error %v", got)
	}
	wantStatus(t, call(t, "POST", f.v3("issue"), f.a, createBody(map[string]any{jirasim.FieldFindingID: "F-9", jirasim.FieldFrameworkReferences: []map[string]string{{"id": optID}}})), 201)

	// v2 on Cloud takes strings for rich text.
	wantStatus(t, call(t, "POST", f.srv.URL+"/rest/api/2/issue", f.a, createBody(map[string]any{"description": "wiki *text*", jirasim.FieldFindingID: "F-10"})), 201)

	if err := f.srv.SetProjectCreateForbidden("SEC", true); err != nil {
		t.Fatal(err)
	}
	forbidden := call(t, "POST", f.v3("issue"), f.a, createBody(nil))
	wantStatus(t, forbidden, 403)
	if len(forbidden.errorMessages(t)) != 1 {
		t.Fatalf("403 body %s", forbidden.body)
	}
}

func TestCreateMeta(t *testing.T) {
	f := newCloud(t, jirasim.Options{})
	types := call(t, "GET", f.v3("issue/createmeta/SEC/issuetypes?maxResults=2"), f.a, nil).json(t)
	if types["total"].(float64) != 5 || len(types["issueTypes"].([]any)) != 2 {
		t.Fatalf("issuetypes %v", types)
	}
	wantStatus(t, call(t, "GET", f.v3("issue/createmeta/SEC/issuetypes?maxResults=201"), f.a, nil), 400)
	wantStatus(t, call(t, "GET", f.v3("issue/createmeta/NOPE/issuetypes"), f.a, nil), 404)
	if err := f.srv.SetFieldRequired("SEC", jirasim.IssueTypeBug, "labels", true); err != nil {
		t.Fatal(err)
	}
	meta := call(t, "GET", f.v3("issue/createmeta/SEC/issuetypes/"+jirasim.IssueTypeBug+"?maxResults=200"), f.a, nil).json(t)
	byID := map[string]map[string]any{}
	for _, fl := range meta["fields"].([]any) {
		m := fl.(map[string]any)
		byID[m["fieldId"].(string)] = m
	}
	ms := byID[jirasim.FieldFrameworkReferences]
	schema := ms["schema"].(map[string]any)
	if schema["type"] != "array" || schema["items"] != "option" || schema["custom"] != "com.atlassian.jira.plugin.system.customfieldtypes:multiselect" || len(ms["allowedValues"].([]any)) != 6 {
		t.Fatalf("multiselect meta %v", ms)
	}
	if byID["labels"]["required"] != true || byID["summary"]["required"] != true || byID["description"]["required"] != false {
		t.Fatalf("required flags: labels=%v summary=%v", byID["labels"]["required"], byID["summary"]["required"])
	}
	if byID[jirasim.FieldSecurityLabels]["schema"].(map[string]any)["custom"] != "com.atlassian.jira.plugin.system.customfieldtypes:labels" {
		t.Fatalf("labels cf %v", byID[jirasim.FieldSecurityLabels])
	}
}

func TestTransitions(t *testing.T) {
	f := newCloud(t, jirasim.Options{})
	is, err := f.srv.AddIssue(jirasim.IssueSpec{Project: "SEC", IssueType: "Bug", Summary: "t", Silent: true})
	if err != nil {
		t.Fatal(err)
	}
	tr := call(t, "GET", f.v3("issue/"+is.Key+"/transitions"), f.a, nil).json(t)
	list := tr["transitions"].([]any)
	if len(list) != 1 {
		t.Fatalf("from To Do: %v", list)
	}
	start := list[0].(map[string]any)
	if start["name"] == "In Progress" || start["to"].(map[string]any)["name"] != "In Progress" {
		t.Fatalf("transition name must differ from status: %v", start)
	}
	// Resolving straight from To Do is not in the workflow.
	bad := call(t, "POST", f.v3("issue/"+is.Key+"/transitions"), f.a, map[string]any{"transition": map[string]string{"id": jirasim.TransitionResolve}})
	wantStatus(t, bad, 400)
	if bad.errorMessages(t)[0] != "Transition id '31' is not valid for this issue." {
		t.Fatalf("invalid transition body %s", bad.body)
	}
	wantStatus(t, call(t, "POST", f.v3("issue/"+is.Key+"/transitions"), f.a, map[string]any{"transition": map[string]string{"id": start["id"].(string)}}), 204)

	exp := call(t, "GET", f.v3("issue/"+is.Key+"/transitions?expand=transitions.fields"), f.a, nil).json(t)
	var resolve map[string]any
	for _, x := range exp["transitions"].([]any) {
		m := x.(map[string]any)
		if m["to"].(map[string]any)["statusCategory"].(map[string]any)["key"] == "done" && m["to"].(map[string]any)["name"] == "Done" {
			resolve = m
		}
	}
	if resolve == nil || resolve["fields"].(map[string]any)["resolution"].(map[string]any)["required"] != true {
		t.Fatalf("resolve transition %v", resolve)
	}
	missing := call(t, "POST", f.v3("issue/"+is.Key+"/transitions"), f.a, map[string]any{"transition": map[string]string{"id": resolve["id"].(string)}})
	wantStatus(t, missing, 400)
	if missing.fieldErrors(t)["resolution"] == nil {
		t.Fatalf("missing resolution body %s", missing.body)
	}
	done := call(t, "POST", f.v3("issue/"+is.Key+"/transitions"), f.a, map[string]any{"transition": map[string]string{"id": resolve["id"].(string)}, "fields": map[string]any{"resolution": map[string]string{"name": "Done"}}})
	wantStatus(t, done, 204)
	if len(done.body) != 0 {
		t.Fatalf("204 with body %q", done.body)
	}
	got, _ := f.srv.Issue(is.Key)
	if got.Status != "Done" || got.StatusCategory != "done" || got.Resolution != "Done" || got.ResolutionDate.IsZero() {
		t.Fatalf("after resolve %+v", got)
	}
	if c := call(t, "POST", f.v3("search/approximate-count"), f.a, map[string]any{"jql": "project = SEC AND statusCategory = Done AND resolution = Done AND resolved >= -1d"}).json(t)["count"].(float64); c != 1 {
		t.Fatalf("resolved count %v", c)
	}
	// Reopen clears resolution and resolution date and records the changelog.
	if err := f.srv.TransitionAsHuman(is.Key, "To Do"); err != nil {
		t.Fatal(err)
	}
	got, _ = f.srv.Issue(is.Key)
	if got.Resolution != "" || !got.ResolutionDate.IsZero() || len(got.Changelog) != 3 {
		t.Fatalf("after reopen %+v", got)
	}
	items := got.Changelog[1].Items
	if items[0].Field != "resolution" || *items[0].ToString != "Done" || items[1].Field != "status" || *items[1].From != jirasim.StatusInProgress {
		t.Fatalf("resolve changelog %+v", items)
	}
	wantStatus(t, call(t, "GET", f.v3("issue/SEC-404/transitions"), f.a, nil), 404)
}

func TestDataCenter(t *testing.T) {
	srv := startSim(t, jirasim.Options{Flavor: jirasim.DataCenter})
	if _, err := srv.AddProject(jirasim.ProjectSpec{Key: "SEC"}); err != nil {
		t.Fatal(err)
	}
	pat := srv.PAT("admin")
	a := bearer(pat)
	v2 := srv.URL + "/rest/api/2/"
	me := call(t, "GET", v2+"myself", a, nil).json(t)
	if me["name"] != "admin" || me["key"] == nil || me["accountId"] != nil {
		t.Fatalf("DC myself %v", me)
	}
	wantStatus(t, call(t, "GET", srv.URL+"/rest/api/latest/myself", a, nil), 200)
	wantStatus(t, call(t, "GET", srv.URL+"/rest/api/3/myself", a, nil), 404)
	wantStatus(t, call(t, "GET", v2+"myself", bearer("nope"), nil), 401)
	srv.SetPassword("admin", "pw")
	wantStatus(t, call(t, "GET", v2+"myself", basic("admin", "pw"), nil), 200)

	r := call(t, "POST", v2+"issue", a, createBody(map[string]any{"description": "plain wiki", "labels": []string{"security"}}))
	wantStatus(t, r, 201)
	wantStatus(t, call(t, "POST", v2+"issue", a, createBody(map[string]any{"description": adfDoc("x")})), 400)
	for range 4 {
		if _, err := srv.AddIssue(jirasim.IssueSpec{Project: "SEC", Summary: "s", Status: "Done", Silent: true}); err != nil {
			t.Fatal(err)
		}
	}
	cnt := call(t, "GET", v2+"search?jql=project%3DSEC&maxResults=0", a, nil).json(t)
	if cnt["total"].(float64) != 5 || len(cnt["issues"].([]any)) != 0 {
		t.Fatalf("DC count %v", cnt)
	}
	page := call(t, "POST", v2+"search", a, map[string]any{"jql": "project = SEC AND statusCategory = Done", "startAt": 1, "maxResults": 2, "fields": []string{"status"}}).json(t)
	if page["total"].(float64) != 4 || len(page["issues"].([]any)) != 2 || page["startAt"].(float64) != 1 {
		t.Fatalf("DC page %v", page)
	}
	projects := call(t, "GET", v2+"project", a, nil)
	var list []any
	decodeInto(t, projects, &list)
	if len(list) != 1 {
		t.Fatalf("DC projects %s", projects.body)
	}
	meta := call(t, "GET", v2+"issue/createmeta/SEC/issuetypes", a, nil).json(t)
	if _, ok := meta["values"]; !ok {
		t.Fatalf("DC createmeta uses values: %v", meta)
	}
	wantStatus(t, call(t, "GET", v2+"project/search", a, nil), 404)
}

// With a page budget, search/jql answers with fewer issues than maxResults and a nextPageToken,
// as Jira Cloud does for large pages; following the tokens still yields every issue once.
func TestSearchJQLPageBudget(t *testing.T) {
	f := newCloud(t, jirasim.Options{})
	for i := range 9 {
		if _, err := f.srv.AddIssue(jirasim.IssueSpec{Project: "SEC", IssueType: "Bug", Summary: fmt.Sprintf("finding %d", i), Silent: true}); err != nil {
			t.Fatal(err)
		}
	}
	f.srv.SetSearchPageBudget(200) // bytes: a couple of issues with a summary each
	seen := map[string]bool{}
	token, pages, short := "", 0, 0
	for {
		body := map[string]any{"jql": "project = SEC ORDER BY key ASC", "maxResults": 50, "fields": []string{"summary"}}
		if token != "" {
			body["nextPageToken"] = token
		}
		p := call(t, "POST", f.v3("search/jql"), f.a, body).json(t)
		pages++
		issues := p["issues"].([]any)
		if len(issues) == 0 {
			t.Fatal("a page must hold at least one issue")
		}
		for _, is := range issues {
			id := is.(map[string]any)["id"].(string)
			if seen[id] {
				t.Fatalf("issue %s on two pages", id)
			}
			seen[id] = true
		}
		if p["isLast"] == true {
			break
		}
		if len(issues) < 50 {
			short++
		}
		token = p["nextPageToken"].(string)
	}
	if len(seen) != 9 || pages < 3 || short == 0 {
		t.Fatalf("%d issues over %d pages (%d short pages with a token)", len(seen), pages, short)
	}
}
