package jira_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/jql"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// searchPath is the search endpoint of each flavor, as the simulator's fault rules see it.
func searchPath(s *site) string {
	if s.c.Flavor() == jira.DataCenter {
		return "POST /rest/api/2/search"
	}
	return "POST /rest/api/3/search/jql"
}

func TestE2EErrorKinds(t *testing.T) {
	for _, s := range allSites(t, seedSmall) {
		t.Run(s.name, func(t *testing.T) {
			ctx := context.Background()
			q := mustJQL(t, jql.Query{Where: jql.Eq("project", "SEC")})
			search := func() error {
				_, err := s.c.Search(ctx, jira.SearchRequest{JQL: q, Fields: []string{"status"}})
				return err
			}
			fault := func(f jirasim.Fault) {
				t.Helper()
				s.srv.ClearFaults()
				if err := s.srv.SetFault(searchPath(s), f); err != nil {
					t.Fatal(err)
				}
			}
			ops := func() int { return s.srv.OperationCount(opFor(s)) }

			// 429 with Retry-After and RateLimit-Reason; the client does not retry by itself.
			fault(jirasim.Fault{RateLimit: &jirasim.RateLimit{Rate: 0.0001, Burst: 0, RetryAfter: 7, Reason: "jira-per-issue-on-write"}})
			n := ops()
			je := kindIs(t, search(), jira.KindRateLimited)
			if je.RetryAfter != 7*time.Second || je.RateLimitReason != "jira-per-issue-on-write" || ops()-n != 1 || !jira.Retryable(je) || jira.RetryDelay(je) != 7*time.Second {
				t.Errorf("429: %+v (calls %d)", je, ops()-n)
			}
			// Pre-enforcement beta headers.
			fault(jirasim.Fault{RateLimit: &jirasim.RateLimit{Rate: 0.0001, RetryAfter: 11, BetaHeaders: true, Reason: "jira-quota-tenant-based"}})
			je = kindIs(t, search(), jira.KindRateLimited)
			if je.RetryAfter != 11*time.Second || je.RateLimitReason != "jira-quota-tenant-based" {
				t.Errorf("beta 429: %+v", je)
			}
			// 503 with Retry-After is treated like a rate limit.
			fault(jirasim.Fault{Unavailable: true, UnavailableRetryAfter: 5})
			if je = kindIs(t, search(), jira.KindRateLimited); je.RetryAfter != 5*time.Second || je.Status != 503 {
				t.Errorf("503: %+v", je)
			}
			for status, kind := range map[int]jira.Kind{500: jira.KindServer, 502: jira.KindServer, 410: jira.KindGone, 409: jira.KindConflict, 422: jira.KindBadRequest} {
				fault(jirasim.Fault{ErrorRate: 1, ErrorStatus: status})
				if je = kindIs(t, search(), kind); je.Status != status {
					t.Errorf("%d: %+v", status, je)
				}
			}
			fault(jirasim.Fault{MalformedBody: true})
			kindIs(t, search(), jira.KindMalformedResponse)
			fault(jirasim.Fault{TruncateBody: true})
			if k := jira.KindOf(search()); k != jira.KindMalformedResponse && k != jira.KindTransport {
				t.Errorf("truncated body kind = %s", k)
			}
			fault(jirasim.Fault{ResetConnection: true})
			kindIs(t, search(), jira.KindTransport)
			fault(jirasim.Fault{Latency: time.Second})
			tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			_, err := s.c.Search(tctx, jira.SearchRequest{JQL: q})
			cancel()
			if je = kindIs(t, err, jira.KindTransport); !errors.Is(je, context.DeadlineExceeded) {
				t.Errorf("deadline: %v", je)
			}
			s.srv.ClearFaults()

			// Jira's own validation errors.
			_, err = s.c.Search(ctx, jira.SearchRequest{JQL: "project = "})
			kindIs(t, err, jira.KindBadRequest)
			if s.c.Flavor() == jira.Cloud {
				// Cloud refuses unbounded JQL; Data Center accepts it.
				_, err = s.c.ApproximateCount(ctx, "ORDER BY created DESC")
				kindIs(t, err, jira.KindBadRequest)
			}
			_, err = s.c.GetIssue(ctx, "SEC-99999")
			kindIs(t, err, jira.KindNotFound)
			_, err = s.c.Transitions(ctx, "NOPE-1")
			kindIs(t, err, jira.KindNotFound)

			// Create: unknown custom field, bad option, forbidden project, and an ambiguous
			// create whose response is lost (the issue exists although the call failed).
			in := jira.IssueInput{Project: "SEC", IssueType: "Bug", Summary: "x"}
			in.CustomFields = map[string]jira.FieldValue{"customfield_99999": jira.TextValue("v")}
			_, err = s.c.CreateIssue(ctx, in)
			if je = kindIs(t, err, jira.KindCustomFieldUnknown); strings.Join(je.CustomFields(), ",") != "customfield_99999" {
				t.Errorf("unknown field: %+v", je)
			}
			in.CustomFields = map[string]jira.FieldValue{jirasim.FieldFrameworkReferences: jira.MultiSelect("No such option")}
			_, err = s.c.CreateIssue(ctx, in)
			kindIs(t, err, jira.KindBadRequest)
			in.CustomFields = nil
			if err := s.srv.SetProjectCreateForbidden("OPS", true); err != nil {
				t.Fatal(err)
			}
			_, err = s.c.CreateIssue(ctx, jira.IssueInput{Project: "OPS", IssueType: "Task", Summary: "x"})
			if je = kindIs(t, err, jira.KindIssueCreateForbidden); jira.Retryable(je) {
				t.Error("create-forbidden must not be retryable")
			}
			createPath := "POST /rest/api/3/issue"
			if s.c.Flavor() == jira.DataCenter {
				createPath = "POST /rest/api/2/issue"
			}
			before := s.srv.IssueCount()
			_ = s.srv.SetFault(createPath, jirasim.Fault{CommitThenDrop: true, Times: 1})
			_, err = s.c.CreateIssue(ctx, in)
			kindIs(t, err, jira.KindTransport)
			if s.srv.IssueCount() != before+1 {
				t.Errorf("commit-then-drop: issue count %d → %d", before, s.srv.IssueCount())
			}
			// No error string of any kind carries a credential.
			for _, e := range []error{err, je} {
				for _, verb := range []string{"%v", "%+v", "%#v"} {
					msg := fmt.Sprintf(verb, e)
					for _, sec := range s.secrets {
						if strings.Contains(msg, sec) {
							t.Fatalf("error leaks a secret: %s", msg)
						}
					}
				}
			}
		})
	}
}

// opFor returns the simulator operation name of the search endpoint.
func opFor(s *site) string {
	if s.c.Flavor() == jira.DataCenter {
		return jirasim.OpSearchLegacy
	}
	return jirasim.OpSearchJQL
}

func TestE2EBadStaticCredentials(t *testing.T) {
	cloud := startSim(t, jirasim.Cloud)
	dc := startSim(t, jirasim.DataCenter)
	ctx := context.Background()
	const wrong = "ATATT3x-wrong-token-0000000000"
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, cfg := range []jira.Config{
		{Flavor: jira.Cloud, BaseURL: cloud.URL, Auth: jira.APIToken(botEmail, jira.NewSecret(wrong)), Logger: logger},
		{Flavor: jira.DataCenter, BaseURL: dc.URL, Auth: jira.PAT(jira.NewSecret(wrong)), Logger: logger},
	} {
		c, err := jira.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Myself(ctx)
		je := kindIs(t, err, jira.KindReauthRequired)
		if je.Status != 401 || len(je.Messages) == 0 || jira.Retryable(je) {
			t.Errorf("%s: %+v", cfg.Flavor, je)
		}
		if strings.Contains(fmt.Sprintf("%+v", je), wrong) {
			t.Fatal("error leaks the token")
		}
	}
	if !strings.Contains(logs.String(), "jira call") || strings.Contains(logs.String(), wrong) {
		t.Fatalf("debug logs: %s", logs.String())
	}
	// A Cloud API token sent to Data Center, and a PAT sent to Cloud, are refused too.
	tok := cloud.APIToken(botEmail)
	c, _ := jira.New(jira.Config{Flavor: jira.Cloud, BaseURL: cloud.URL, Auth: jira.PAT(jira.NewSecret(tok))})
	_, err := c.Myself(ctx)
	kindIs(t, err, jira.KindReauthRequired)
}
