package api_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"

	"github.com/jiraconnect/jiraconnect/api"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/jira/webhook"
	"github.com/jiraconnect/jiraconnect/metrics"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

// signalCounter stands in for Temporal in this fuzz test only: the bridge's single interaction
// with Temporal is SignalWorkflow, and the property under test is whether it is called at all.
// Any other call panics through the nil embedded client, which would fail the test loudly.
type signalCounter struct {
	client.Client
	signals atomic.Int64
}

func (c *signalCounter) SignalWorkflow(context.Context, string, string, string, any) error {
	c.signals.Add(1)
	return nil
}

// FuzzWebhookHandler feeds arbitrary bodies to an authenticated webhook URL: the handler never
// panics or answers 5xx, and it signals the workflow only for payloads the parser accepts.
func FuzzWebhookHandler(f *testing.F) {
	d := testDB.Open(f)
	kr, err := seal.OpenLocalKeyring(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	sealer, err := seal.New(kr, tenancy.KeyStore{DB: d}, seal.Options{})
	if err != nil {
		f.Fatal(err)
	}
	svc := &tenancy.Service{DB: d, Sealer: sealer}
	org, _, err := svc.CreateOrg(context.Background(), "fuzz-org", audit.Actor{Type: audit.ActorCLI, ID: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	connID := uuid.New()
	const secret = "fuzz-url-secret"
	err = d.InOrg(context.Background(), org.ID, func(q *dbq.Queries) error {
		_, err := q.CreateConnection(context.Background(), dbq.CreateConnectionParams{ID: connID, OrgID: org.ID, Kind: "cloud_token",
			SiteUrl: "https://x.atlassian.net", Status: "active", Config: []byte(`{}`), Scopes: []string{}, SealedCredentials: []byte{1},
			WebhookSecretHash: connections.HashURLSecret(secret), WorkflowID: "jira-connection/" + connID.String()})
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	counter := &signalCounter{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New(log)
	srv := httptest.NewServer(api.New(api.Deps{Log: log, DB: d, Tenancy: svc, Metrics: m, Sealer: sealer,
		Connections: &connections.Service{DB: d, Sealer: sealer}, Temporal: counter}).Handler())
	f.Cleanup(srv.Close)
	url := srv.URL + "/webhooks/jira/" + connID.String() + "/" + secret

	for _, seed := range []string{
		`{"timestamp":1700000000000,"webhookEvent":"jira:issue_updated","issue":{"id":"1","key":"SEC-1","fields":{"status":{"id":"3","name":"Done","statusCategory":{"key":"done"}}}},"changelog":{"items":[{"field":"status","from":"1","to":"3","fromString":"To Do","toString":"Done"}]}}`,
		`{"webhookEvent":"comment_created"}`, `{}`, `[]`, `null`, `{"timestamp":"x"}`, "\x00\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := counter.signals.Load()
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("status %d for body %q", resp.StatusCode, body)
		}
		signaled := counter.signals.Load() > before
		_, perr := webhook.Parse(body)
		if perr != nil && signaled {
			t.Fatalf("signalled for a payload the parser rejects (%v): %q", perr, body)
		}
		if perr != nil && !errors.Is(perr, webhook.ErrUnsupportedEvent) && resp.StatusCode != 400 && resp.StatusCode != 413 {
			t.Fatalf("invalid payload answered %d: %q", resp.StatusCode, body)
		}
	})
}
