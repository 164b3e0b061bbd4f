package jirasim_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

// receiver is a webhook endpoint that records requests and answers with scripted statuses.
type receiver struct {
	mu       sync.Mutex
	got      []received
	statuses []int // answered in order; 200 once exhausted
	srv      *httptest.Server
}

type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	rc := &receiver{statuses: statuses}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: b})
		st := 200
		if len(rc.statuses) > 0 {
			st, rc.statuses = rc.statuses[0], rc.statuses[1:]
		}
		rc.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func flush(t *testing.T, srv *jirasim.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.FlushWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
}

func fastDelivery() jirasim.DeliveryOptions {
	return jirasim.DeliveryOptions{InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxAttempts: 4}
}

func TestDynamicWebhooks(t *testing.T) {
	f := newCloud(t, jirasim.Options{Webhooks: fastDelivery()})
	rc := newReceiver(t)
	tokens := oauthLogin(t, f.srv, allScopes)
	tok := tokens["access_token"].(string)
	gw := f.srv.GatewayURL() + "/rest/api/3/webhook"

	// Not an app: API-token callers get 403.
	notApp := call(t, "POST", f.v3("webhook"), f.a, map[string]any{"url": rc.srv.URL, "webhooks": []any{}})
	wantStatus(t, notApp, 403)
	if notApp.errorMessages(t)[0] != "The caller isn't an app." {
		t.Fatalf("not-app body %s", notApp.body)
	}

	reg := call(t, "POST", gw, bearer(tok), map[string]any{"url": rc.srv.URL, "webhooks": []any{
		map[string]any{"events": []string{"jira:issue_updated", "jira:issue_created"}, "jqlFilter": "project = SEC", "fieldIdsFilter": []string{"status", "resolution"}},
		map[string]any{"events": []string{"jira:issue_updated"}, "jqlFilter": "labels = security"},
	}})
	wantStatus(t, reg, 200)
	results := reg.json(t)["webhookRegistrationResult"].([]any)
	first := results[0].(map[string]any)
	if first["createdWebhookId"] == nil || results[1].(map[string]any)["errors"] == nil {
		t.Fatalf("registration results %v", results)
	}
	id := int64(first["createdWebhookId"].(float64))
	wantStatus(t, call(t, "POST", gw, bearer(tok), map[string]any{"url": "https://elsewhere.example.com/hook", "webhooks": []any{map[string]any{"events": []string{"jira:issue_updated"}, "jqlFilter": "project = SEC"}}}), 400)

	list := call(t, "GET", gw, bearer(tok), nil).json(t)
	vals := list["values"].([]any)
	exp := int64(vals[0].(map[string]any)["expirationDate"].(float64))
	if len(vals) != 1 || time.UnixMilli(exp).Sub(f.srv.Now()) < 29*24*time.Hour {
		t.Fatalf("list %v", list)
	}

	is, err := f.srv.AddIssue(jirasim.IssueSpec{Project: "SEC", IssueType: "Bug", Summary: "hook me"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.srv.EditAsHuman(is.Key, jirasim.IssueEdit{Labels: &[]string{"security"}}); err != nil { // filtered out by fieldIdsFilter
		t.Fatal(err)
	}
	if err := f.srv.TransitionAsHuman(is.Key, "In Progress"); err != nil {
		t.Fatal(err)
	}
	flush(t, f.srv)
	got := rc.all()
	if len(got) != 2 {
		t.Fatalf("got %d deliveries, want created + transition", len(got))
	}
	var payload struct {
		Timestamp    int64   `json:"timestamp"`
		WebhookEvent string  `json:"webhookEvent"`
		TypeName     string  `json:"issue_event_type_name"`
		MatchedIDs   []int64 `json:"matchedWebhookIds"`
		Issue        struct {
			Key    string `json:"key"`
			Fields struct {
				Status struct {
					StatusCategory struct{ Key string } `json:"statusCategory"`
				} `json:"status"`
			} `json:"fields"`
		} `json:"issue"`
		Changelog struct {
			Items []jirasim.ChangeItem `json:"items"`
		} `json:"changelog"`
	}
	// Workers deliver concurrently, so order is not guaranteed; pick the update.
	upd := got[1]
	if strings.Contains(string(got[0].body), `"webhookEvent":"jira:issue_updated"`) {
		upd = got[0]
	}
	if err := json.Unmarshal(upd.body, &payload); err != nil {
		t.Fatal(err)
	}
	h := upd.header
	if payload.WebhookEvent != "jira:issue_updated" || payload.TypeName != "issue_generic" || payload.Issue.Key != is.Key ||
		payload.Issue.Fields.Status.StatusCategory.Key != "indeterminate" || len(payload.MatchedIDs) != 1 || payload.MatchedIDs[0] != id ||
		payload.Changelog.Items[0].FieldID != "status" || *payload.Changelog.Items[0].ToString != "In Progress" || payload.Timestamp < 1e12 {
		t.Fatalf("payload %s", upd.body)
	}
	if h.Get("X-Atlassian-Webhook-Identifier") == "" || h.Get("X-Atlassian-Webhook-Flow") != "Primary" || h.Get("X-Atlassian-Webhook-Retry") != "" ||
		!strings.HasPrefix(h.Get("Content-Type"), "application/json") || h.Get("X-Hub-Signature") != "" {
		t.Fatalf("headers %v", h)
	}

	// Expiry: after 30 days nothing is delivered until refreshed.
	f.srv.AdvanceClock(31 * 24 * time.Hour)
	if err := f.srv.TransitionAsHuman(is.Key, "To Do"); err != nil {
		t.Fatal(err)
	}
	flush(t, f.srv)
	if n := len(rc.all()); n != 2 {
		t.Fatalf("expired webhook delivered (%d)", n)
	}
	// The access token expired with the clock jump; refresh it like a client would.
	tok = refresh(t, f.srv, tokens["refresh_token"].(string)).json(t)["access_token"].(string)
	ref := call(t, "PUT", gw+"/refresh", bearer(tok), map[string]any{"webhookIds": []int64{id, 999999}})
	wantStatus(t, ref, 200)
	if err := f.srv.TransitionAsHuman(is.Key, "In Progress"); err != nil {
		t.Fatal(err)
	}
	flush(t, f.srv)
	if n := len(rc.all()); n != 3 {
		t.Fatalf("refreshed webhook not delivered (%d)", n)
	}
	wantStatus(t, call(t, "DELETE", gw, bearer(tok), map[string]any{"webhookIds": []int64{id}}), 202)
	if n := len(f.srv.Webhooks()); n != 0 {
		t.Fatalf("%d registrations after delete", n)
	}
}

func TestAdminWebhookSignatureRetriesDuplicatesAndLoss(t *testing.T) {
	f := newCloud(t, jirasim.Options{Webhooks: fastDelivery()})
	rc := newReceiver(t, 503, 429) // two retryable failures, then 200
	const secret = "s3cret"
	create := call(t, "POST", f.srv.URL+"/rest/webhooks/1.0/webhook", f.a, map[string]any{
		"name": "sec", "url": rc.srv.URL, "events": []string{"jira:issue_updated"},
		"filters": map[string]string{"issue-related-events-section": "labels = security"}, "secret": secret})
	wantStatus(t, create, 201)
	in, err := f.srv.AddIssue(jirasim.IssueSpec{Project: "SEC", Summary: "a", Labels: []string{"security"}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.srv.AddIssue(jirasim.IssueSpec{Project: "SEC", Summary: "b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{in.Key, out.Key} {
		if err := f.srv.TransitionAsHuman(k, "In Progress"); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, f.srv)
	got := rc.all()
	if len(got) != 3 {
		t.Fatalf("attempts %d, want 3 (503, 429, 200) for the labelled issue only", len(got))
	}
	ident := got[0].header.Get("X-Atlassian-Webhook-Identifier")
	for i, g := range got {
		if g.header.Get("X-Atlassian-Webhook-Identifier") != ident {
			t.Fatalf("identifier changed on retry %d", i)
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(g.body)
		if g.header.Get("X-Hub-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			t.Fatalf("bad signature %q", g.header.Get("X-Hub-Signature"))
		}
	}
	if got[0].header.Get("X-Atlassian-Webhook-Retry") != "" || got[2].header.Get("X-Atlassian-Webhook-Retry") != "2" {
		t.Fatalf("retry headers %q %q", got[0].header.Get("X-Atlassian-Webhook-Retry"), got[2].header.Get("X-Atlassian-Webhook-Retry"))
	}
	var codes []int
	for _, d := range f.srv.Deliveries() {
		codes = append(codes, d.Status)
	}
	if len(codes) != 3 || codes[0] != 503 || codes[1] != 429 || codes[2] != 200 {
		t.Fatalf("delivery log codes %v", codes)
	}

	// Non-retryable 4xx is final.
	rc4 := newReceiver(t, 401)
	if _, err := f.srv.AddAdminWebhook(jirasim.AdminWebhookSpec{URL: rc4.srv.URL, Events: []string{"jira:issue_created"}}); err != nil {
		t.Fatal(err)
	}
	f.srv.ResetDeliveries()
	f.srv.SetWebhookFaults(jirasim.WebhookFaults{Duplicate: true})
	if _, err := f.srv.AddIssue(jirasim.IssueSpec{Project: "SEC", Summary: "dup"}); err != nil {
		t.Fatal(err)
	}
	flush(t, f.srv)
	g4 := rc4.all()
	if len(g4) != 2 || g4[0].header.Get("X-Atlassian-Webhook-Identifier") != g4[1].header.Get("X-Atlassian-Webhook-Identifier") {
		t.Fatalf("duplicate deliveries: %d", len(g4))
	}
	for _, d := range f.srv.Deliveries() {
		if d.Attempt != 1 {
			t.Fatalf("401 was retried: %+v", d)
		}
	}

	f.srv.SetWebhookFaults(jirasim.WebhookFaults{})
	f.srv.LoseNextDeliveries(1)
	if _, err := f.srv.AddIssue(jirasim.IssueSpec{Project: "SEC", Summary: "lost"}); err != nil {
		t.Fatal(err)
	}
	flush(t, f.srv)
	if len(rc4.all()) != 2 {
		t.Fatal("lost delivery was sent")
	}
	ds := f.srv.Deliveries()
	if !ds[len(ds)-1].Lost {
		t.Fatalf("lost delivery not recorded: %+v", ds[len(ds)-1])
	}
}

func TestDataCenterWebhookNoRetryAndEventType(t *testing.T) {
	srv := startSim(t, jirasim.Options{Flavor: jirasim.DataCenter, Webhooks: fastDelivery()})
	if _, err := srv.AddProject(jirasim.ProjectSpec{Key: "SEC"}); err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, 500)
	if _, err := srv.AddAdminWebhook(jirasim.AdminWebhookSpec{URL: rc.srv.URL, Events: []string{"jira:issue_updated"}}); err != nil {
		t.Fatal(err)
	}
	is, err := srv.AddIssue(jirasim.IssueSpec{Project: "SEC", Summary: "x", Status: "In Progress"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.TransitionAsHuman(is.Key, "Done"); err != nil {
		t.Fatal(err)
	}
	flush(t, srv)
	got := rc.all()
	if len(got) != 1 {
		t.Fatalf("DC retried: %d attempts", len(got))
	}
	body := string(got[0].body)
	if !strings.Contains(body, `"issue_event_type_name":"issue_resolved"`) || strings.Contains(body, `"fieldId"`) {
		t.Fatalf("DC payload %s", body)
	}
}
