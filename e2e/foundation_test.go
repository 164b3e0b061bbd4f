// Package e2e runs jiraconnect's processes end to end: the real app wiring (config → core → API
// and worker) against real Postgres (a fresh database) and a real in-process Temporal server.
package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/server/temporaltest"

	"github.com/jiraconnect/jiraconnect/app"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/config"
	"github.com/jiraconnect/jiraconnect/db/dbtest"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, &testDB)) }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func get(t *testing.T, url, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFoundationEndToEnd(t *testing.T) {
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	apiAddr, opsAddr, workerAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	env := map[string]string{
		"DATABASE_URL":       testDB.AppURL,
		"DATABASE_OWNER_URL": testDB.OwnerURL,
		"TEMPORAL_ADDRESS":   ts.GetFrontendHostPort(),
		"TEMPORAL_NAMESPACE": ts.GetDefaultNamespace(),
		"API_ADDR":           apiAddr,
		"OPS_ADDR":           opsAddr,
		"WORKER_ADDR":        workerAddr,
		"LOCAL_KEYRING_DIR":  t.TempDir(),
		"LOG_LEVEL":          "warn",
	}
	cfg, err := config.LoadFrom(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := app.SyncCatalogue(ctx, cfg.DatabaseOwnerURL); err != nil {
		t.Fatal(err)
	}
	core, err := app.NewCore(ctx, cfg, cfg.NewLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close()
	tc, err := core.DialTemporal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	done := make(chan error, 2)
	go func() { done <- core.RunAPI(ctx, tc) }()
	go func() { done <- core.RunWorker(ctx, tc) }()

	// Both processes become ready against real Postgres and Temporal.
	deadline := time.Now().Add(20 * time.Second)
	for _, u := range []string{"http://" + apiAddr + "/readyz", "http://" + workerAddr + "/readyz"} {
		for {
			code, body := get(t, u, "")
			if code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready: %d %s", u, code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	org, key, err := core.Tenancy.CreateOrg(ctx, "E2E Org", audit.Actor{Type: audit.ActorCLI, ID: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, "http://"+apiAddr+"/v1/orgs/me", key.Plaintext); code != 200 || !strings.Contains(body, org.ID.String()) {
		t.Fatalf("orgs/me: %d %s", code, body)
	}

	// Metrics are served to operators on OPS_ADDR, never on the public listener that takes webhooks.
	if code, _ := get(t, "http://"+apiAddr+"/metrics", ""); code != 404 {
		t.Errorf("public listener serves /metrics: %d", code)
	}
	if code, body := get(t, "http://"+opsAddr+"/metrics", ""); code != 200 || !strings.Contains(body, "jiraconnect_http_requests_total") {
		t.Errorf("ops listener metrics: %d %.300s", code, body)
	}
	if code, _ := get(t, "http://"+opsAddr+"/readyz", ""); code != 200 {
		t.Errorf("ops listener readyz: %d", code)
	}
	// /metrics on the worker includes the Temporal SDK's own series.
	code, body := get(t, "http://"+workerAddr+"/metrics", "")
	if code != 200 || !strings.Contains(body, "temporal_") {
		t.Fatalf("worker metrics lack temporal sdk series: %d %.500s", code, body)
	}
	// The API and the worker log in as the application role itself, so no RESET ROLE in one of
	// their sessions can leave it.
	var login string
	if err := core.DB.Pool.QueryRow(ctx, `SELECT session_user`).Scan(&login); err != nil || login != "jiraconnect_app" {
		t.Fatalf("the processes log in as %q (%v), want jiraconnect_app", login, err)
	}
	// The control catalogue was synchronised.
	var controls int
	if err := testDB.Owner(t).QueryRow(ctx, `SELECT count(*) FROM controls`).Scan(&controls); err != nil || controls < 5 {
		t.Fatalf("controls: %d %v", controls, err)
	}

	cancel()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("process stopped with %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("processes did not stop")
		}
	}
}
