package api_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/jiraconnect/jiraconnect/jira/webhook"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// nudgeCounter stands in for Temporal in this fuzz test only: the bridge's single interaction
// with Temporal is the inbox-nudge SignalWorkflow, and the property under test is whether it is
// called at all. Any other call panics through the nil embedded client, which would fail the test
// loudly.
type nudgeCounter struct {
	client.Client
	nudges atomic.Int64
}

func (c *nudgeCounter) SignalWorkflow(_ context.Context, _, _, name string, _ any) error {
	if name != workflows.SignalInboxNudge {
		panic("unexpected signal " + name)
	}
	c.nudges.Add(1)
	return nil
}

// FuzzWebhookHandler feeds arbitrary bodies to an authenticated webhook URL: the handler never
// panics or answers 5xx, and it stores a delivery in the inbox and nudges the workflow only for
// payloads the parser accepts (and then always both).
func FuzzWebhookHandler(f *testing.F) {
	counter := &nudgeCounter{}
	e := newHookEnv(f, counter, slog.New(slog.NewTextHandler(io.Discard, nil)))
	connID, url := e.connection()

	for _, seed := range []string{
		`{"timestamp":1700000000000,"webhookEvent":"jira:issue_updated","issue":{"id":"1","key":"SEC-1","fields":{"status":{"id":"3","name":"Done","statusCategory":{"key":"done"}}}},"changelog":{"items":[{"field":"status","from":"1","to":"3","fromString":"To Do","toString":"Done"}]}}`,
		`{"webhookEvent":"comment_created"}`, `{}`, `[]`, `null`, `{"timestamp":"x"}`, "\x00\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// Nudges are asynchronous: wait for those of earlier inputs before counting.
		e.server.WaitNudgesIdle()
		before, storedBefore := counter.nudges.Load(), e.pending(t, connID)
		resp, err := checkedClient(t).Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("status %d for body %q", resp.StatusCode, body)
		}
		e.server.WaitNudgesIdle()
		nudged := counter.nudges.Load() > before
		stored := e.pending(t, connID) > storedBefore
		_, perr := webhook.Parse(body)
		if perr != nil && (nudged || stored) {
			t.Fatalf("stored %t / nudged %t for a payload the parser rejects (%v): %q", stored, nudged, perr, body)
		}
		if perr != nil && !errors.Is(perr, webhook.ErrUnsupportedEvent) && resp.StatusCode != 400 && resp.StatusCode != 413 {
			t.Fatalf("invalid payload answered %d: %q", resp.StatusCode, body)
		}
		if resp.StatusCode == http.StatusAccepted && perr == nil && (!nudged || !stored) {
			t.Fatalf("accepted a valid payload without storing (%t) and nudging (%t) it: %q", stored, nudged, body)
		}
	})
}
