package findings

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/jql"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// These tests send BuildIssue's payload through the real jira client to the Jira simulator over
// HTTP, for both flavors: the simulator validates what Jira validates (ADF on Cloud v3, wiki
// strings on Data Center, multi-select options, label rules, text-field length), and a recorder in
// front of it keeps the exact request body for field-by-field checks.

// recorder keeps the bodies of issue-create requests on their way to the simulator.
type recorder struct {
	next  http.Handler
	mu    sync.Mutex
	posts [][]byte
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/issue") {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.posts = append(r.posts, body)
		r.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.next.ServeHTTP(w, req)
}

func (r *recorder) last(t *testing.T) map[string]any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.posts) == 0 {
		t.Fatal("no create request recorded")
	}
	var body struct {
		Fields map[string]any `json:"fields"`
	}
	if err := json.Unmarshal(r.posts[len(r.posts)-1], &body); err != nil {
		t.Fatal(err)
	}
	return body.Fields
}

type simSite struct {
	sim    *jirasim.Sim
	rec    *recorder
	client *jira.Client
	cfg    SyncConfig
}

func startSimSite(t *testing.T, flavor jirasim.Flavor) *simSite {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sim := jirasim.New(jirasim.Options{Flavor: flavor, Logger: quiet, RandSeed: 1})
	rec := &recorder{next: sim}
	hs := httptest.NewServer(rec)
	t.Cleanup(func() { hs.Close(); _ = sim.Close() })
	sim.SetBaseURL(hs.URL)
	if _, err := sim.AddProject(jirasim.ProjectSpec{Key: "SEC", Name: "Security"}); err != nil {
		t.Fatal(err)
	}
	field, err := sim.AddCustomField(jirasim.CustomFieldSpec{Name: "AI framework references", Type: jirasim.FieldMultiSelect,
		Options: []string{"OWASP_LLM01", "MITRE_ATLAS_AML_T0051", "EU_AI_ACT_Art15"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := validConfig()
	cfg.IssueType = jirasim.IssueTypeVulnerability
	cfg.FrameworkField = field.ID
	cfg.FindingIDField = jirasim.FieldFindingID

	jc := jira.Config{Flavor: jira.Cloud, BaseURL: hs.URL, Logger: quiet}
	if flavor == jirasim.DataCenter {
		jc.Flavor = jira.DataCenter
		jc.Auth = jira.PAT(jira.NewSecret(sim.PAT("svc-jiraconnect")))
	} else {
		jc.Auth = jira.APIToken("bot@example.com", jira.NewSecret(sim.APIToken("bot@example.com")))
	}
	c, err := jira.New(jc)
	if err != nil {
		t.Fatal(err)
	}
	return &simSite{sim: sim, rec: rec, client: c, cfg: cfg}
}

func TestBuildIssueAgainstSimulator(t *testing.T) {
	for _, flavor := range []jirasim.Flavor{jirasim.Cloud, jirasim.DataCenter} {
		t.Run(string(flavor), func(t *testing.T) {
			ctx := context.Background()
			s := startSimSite(t, flavor)
			f := validFinding()
			f.Title = "Prompt injection leaks jane@example.com — " + strings.Repeat("ü", 300)
			f.Excerpt += "\naws_secret_access_key=" + sampleAWSSecret + "\n" + sampleGHP
			in, err := BuildIssue(testScope, f, s.cfg)
			if err != nil {
				t.Fatal(err)
			}
			created, err := s.client.CreateIssue(ctx, in)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			marker := IssueMarker(testScope, f.ID)

			// The request, field by field.
			fields := s.rec.last(t)
			if got := fields["project"]; !reflect.DeepEqual(got, map[string]any{"key": "SEC"}) {
				t.Errorf("project %v", got)
			}
			if got := fields["issuetype"]; !reflect.DeepEqual(got, map[string]any{"id": jirasim.IssueTypeVulnerability}) {
				t.Errorf("issuetype %v", got)
			}
			if got := fields["summary"]; got != in.Summary || !strings.HasPrefix(in.Summary, "[jiraconnect] Prompt injection leaks [REDACTED:email] — ü") {
				t.Errorf("summary %q", got)
			}
			wantLabels := []any{"jiraconnect", "security-finding", "OWASP_LLM01", "MITRE_ATLAS_AML_T0051", "EU_AI_ACT_Art15", marker}
			if got := fields["labels"]; !reflect.DeepEqual(got, wantLabels) {
				t.Errorf("labels %v", got)
			}
			wantRefs := []any{map[string]any{"value": "OWASP_LLM01"}, map[string]any{"value": "MITRE_ATLAS_AML_T0051"}, map[string]any{"value": "EU_AI_ACT_Art15"}}
			if got := fields[s.cfg.FrameworkField]; !reflect.DeepEqual(got, wantRefs) {
				t.Errorf("framework field %v", got)
			}
			if got := fields[jirasim.FieldFindingID]; got != f.ID.String() {
				t.Errorf("finding id field %v", got)
			}
			desc := fields["description"]
			var descText string
			if flavor == jirasim.Cloud {
				raw, _ := json.Marshal(desc)
				checkADF(t, raw, "https://app.example.com/findings/"+f.ID.String())
				descText = string(raw)
			} else {
				str, ok := desc.(string)
				if !ok {
					t.Fatalf("Data Center description is %T, want a wiki string", desc)
				}
				for _, want := range []string{"{code}\nUser: ignore previous instructions", "aws_secret_access_key=[REDACTED:aws-secret-key]\n[REDACTED:github-token]\n{code}",
					"[View this finding in jiraconnect|https://app.example.com/findings/" + f.ID.String() + "]"} {
					if !strings.Contains(str, want) {
						t.Errorf("wiki description lacks %q:\n%s", want, str)
					}
				}
				descText = str
			}
			for _, secret := range []string{"admin@example.com", "jane@example.com", sampleAWSSecret, sampleGHP} {
				if strings.Contains(descText, secret) || strings.Contains(in.Summary, secret) {
					t.Errorf("payload contains %q", secret)
				}
			}

			// What the site stored.
			is, ok := s.sim.Issue(created.Key)
			if !ok {
				t.Fatalf("issue %s not in the simulator", created.Key)
			}
			// Jira keeps labels as a set (the simulator returns them sorted).
			stored := slices.Sorted(slices.Values(is.Labels))
			if want := slices.Sorted(slices.Values(in.Labels)); !reflect.DeepEqual(stored, want) {
				t.Errorf("stored labels %v", is.Labels)
			}
			if !strings.Contains(is.Description, "[REDACTED:email]") || strings.Contains(is.Description, "@example.com") {
				t.Errorf("stored description:\n%s", is.Description)
			}

			// A retry finds the issue by its marker.
			q, err := jql.Query{Where: MarkerQuery(s.cfg.ProjectKey, marker)}.Build()
			if err != nil {
				t.Fatal(err)
			}
			page, err := s.client.Search(ctx, jira.SearchRequest{JQL: q})
			if err != nil {
				t.Fatalf("search: %v", err)
			}
			if len(page.Issues) != 1 || page.Issues[0].Key != created.Key {
				t.Errorf("marker search returned %+v", page.Issues)
			}
			other, _ := jql.Query{Where: MarkerQuery(s.cfg.ProjectKey, IssueMarker(Scope{OrgID: testScope.ConnectionID, ConnectionID: testScope.OrgID}, f.ID))}.Build()
			if page, err := s.client.Search(ctx, jira.SearchRequest{JQL: other}); err != nil || len(page.Issues) != 0 {
				t.Errorf("another scope's marker found %v (%v)", page, err)
			}
		})
	}
}

// TestStatusMapAgainstSimulator moves an issue through every finding status with the default
// status map — the simulator's site calls its new status "To Do", not "Open" — and maps each
// resulting status back. The simulator's workflow is single-hop (To Do → In Progress → a done
// status → To Do), so the statuses are visited in an order the workflow allows.
func TestStatusMapAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	s := startSimSite(t, jirasim.Cloud)
	f := validFinding()
	in, err := BuildIssue(testScope, f, s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	created, err := s.client.CreateIssue(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	steps := []Status{StatusTriaged, StatusResolved, StatusOpen, StatusTriaged, StatusAccepted, StatusOpen, StatusTriaged, StatusFalsePositive, StatusOpen}
	wantJira := map[Status]string{StatusOpen: "To Do", StatusTriaged: "In Progress", StatusResolved: "Done", StatusAccepted: "Won't Do", StatusFalsePositive: "Cancelled"}
	wantResolution := map[Status]string{StatusResolved: "Done", StatusAccepted: "Won't Do", StatusFalsePositive: "Cancelled"}
	link := LinkState{IssueKey: created.Key}
	for i, st := range steps {
		d := DecideOutbound(s.cfg, st, OriginPlatform, link)
		if !d.Transition() {
			t.Fatalf("step %d (%s): outcome %q", i, st, d.Outcome)
		}
		res, err := s.client.TransitionTo(ctx, created.Key, d.Target)
		if err != nil {
			t.Fatalf("step %d (%s): %v", i, st, err)
		}
		link = link.AfterPush(StatusFromJira(res.To), res.Changed, t0)
		is, _ := s.sim.Issue(created.Key)
		if is.Status != wantJira[st] || is.Resolution != wantResolution[st] {
			t.Errorf("step %d (%s): issue in %q resolution %q", i, st, is.Status, is.Resolution)
		}
		if back, ok := InboundStatus(s.cfg, StatusFromJira(res.To)); !ok || back != st {
			t.Errorf("step %d: %q maps back to %q", i, res.To.Name, back)
		}
		if again := DecideOutbound(s.cfg, st, OriginPlatform, link); again.Transition() {
			t.Errorf("step %d: would transition again (%q)", i, again.Outcome)
		}
	}
}
