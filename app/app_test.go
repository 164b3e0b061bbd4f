package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporaltest"

	"github.com/jiraconnect/jiraconnect/app"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/config"
	"github.com/jiraconnect/jiraconnect/db/dbtest"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/jira"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, &testDB)) }

// newCore assembles a process the way cmd/jiraconnect does, from environment variables.
func newCore(t *testing.T, env map[string]string) *app.Core {
	t.Helper()
	vars := map[string]string{
		"DATABASE_URL":             testDB.AppURL,
		"DATABASE_OWNER_URL":       testDB.OwnerURL,
		"LOCAL_KEYRING_DIR":        t.TempDir(),
		"JIRA_OAUTH_CLIENT_ID":     "client-id",
		"JIRA_OAUTH_CLIENT_SECRET": "client-secret",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.LoadFrom(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	require.NoError(t, err)
	core, err := app.NewCore(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(core.Close)
	return core
}

// The production wiring sends every Jira and Atlassian call through the egress policy's client:
// the connections' clients, the API's credential check and the OAuth app. A loopback Jira is
// refused under the default configuration — no request reaches it — and reached once the
// operator allows loopback, so the policy in force is the configured one.
func TestCoreRoutesEveryJiraCallThroughTheEgressPolicy(t *testing.T) {
	var hits atomic.Int32
	jiraSite := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"accountId":"1","name":"admin","displayName":"Admin"}`)
	}))
	t.Cleanup(jiraSite.Close)

	core := newCore(t, nil)
	require.NotNil(t, core.Egress)
	require.NotNil(t, core.Connections.HTTPClient, "the connections' client is the policy's")
	assert.Same(t, core.Egress.HTTPClient(), core.Connections.HTTPClient)
	require.NotNil(t, core.OAuth)
	assert.Same(t, core.Egress.HTTPClient(), core.OAuth.HTTPClient, "the OAuth app's client is the policy's")

	// A connection's Jira client.
	c, err := core.Connections.NewJiraClient(jira.Config{Flavor: jira.DataCenter, BaseURL: jiraSite.URL, Auth: jira.PAT(jira.NewSecret("pat"))})
	require.NoError(t, err)
	_, err = c.Myself(context.Background())
	assert.Equal(t, jira.KindEgressDenied, jira.KindOf(err), "%v", err)
	// The OAuth app's token and resource calls.
	resp, err := core.OAuth.HTTPClient.Get(jiraSite.URL + "/oauth/token/accessible-resources")
	if resp != nil {
		_ = resp.Body.Close()
	}
	assert.ErrorIs(t, err, egress.ErrDenied)
	// The API: creating a connection to the loopback site is refused before any call.
	_, key, err := core.Tenancy.CreateOrg(context.Background(), "egress-wiring", audit.Actor{Type: audit.ActorCLI, ID: "test"})
	require.NoError(t, err)
	api := httptest.NewServer(core.NewAPI(nil).Handler())
	t.Cleanup(api.Close)
	req, err := http.NewRequest(http.MethodPost, api.URL+"/v1/connections", strings.NewReader(
		`{"kind":"datacenter_pat","site_url":"`+jiraSite.URL+`","pat":"pat"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key.Plaintext)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), `"egress_denied"`)
	assert.Zero(t, hits.Load(), "the default policy let a request reach a loopback site")

	allowed := newCore(t, map[string]string{"JIRA_EGRESS_ALLOW": egress.Loopback})
	c, err = allowed.Connections.NewJiraClient(jira.Config{Flavor: jira.DataCenter, BaseURL: jiraSite.URL, Auth: jira.PAT(jira.NewSecret("pat"))})
	require.NoError(t, err)
	_, err = c.Myself(context.Background())
	require.NoError(t, err)
	assert.EqualValues(t, 1, hits.Load())
}

// Ready means the task queue is served: a frontend that answers health checks is not enough when
// the namespace the process works in does not exist (or matching cannot serve it yet).
func TestTemporalReadinessNeedsTheTaskQueue(t *testing.T) {
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	for _, tc := range []struct {
		namespace string
		ready     bool
	}{{ts.GetDefaultNamespace(), true}, {"no-such-namespace", false}} {
		core := newCore(t, map[string]string{"TEMPORAL_ADDRESS": ts.GetFrontendHostPort(), "TEMPORAL_NAMESPACE": tc.namespace})
		c, err := client.Dial(client.Options{HostPort: ts.GetFrontendHostPort(), Namespace: tc.namespace})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, healthErr := c.CheckHealth(ctx, &client.CheckHealthRequest{})
		require.NoError(t, healthErr, "the frontend answers either way")
		err = core.TemporalReady(c)(ctx)
		cancel()
		c.Close()
		if tc.ready {
			assert.NoError(t, err, tc.namespace)
		} else {
			assert.ErrorContains(t, err, "no-such-namespace", "namespace %s", tc.namespace)
		}
	}
}
