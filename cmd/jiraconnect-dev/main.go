// Command jiraconnect-dev is the local development stack (`make dev`): in one process it runs an
// embedded Temporal server persisted to SQLite, the Temporal Web UI, the database migrations, the
// API and a worker. Ctrl-C stops everything cleanly; state in the data directory and in Postgres
// survives restarts.
//
// With --temporal-only it runs just the embedded Temporal server (and the UI unless --ui-port=0):
// no migrations, API or worker. The fault-injection suite (faultsuite/) uses this to run the
// Temporal server as a process of its own that it can stop and restart under a running API and
// worker.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/jiraconnect/jiraconnect/app"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/config"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/devstack"
	"github.com/jiraconnect/jiraconnect/egress"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "jiraconnect-dev:", err)
		os.Exit(1)
	}
	// Printed once everything, the embedded Temporal server included, has stopped.
	fmt.Fprintln(os.Stderr, "jiraconnect-dev: stopped")
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("jiraconnect-dev", flag.ContinueOnError)
	dataDir := fs.String("data-dir", ".jiraconnect", "directory for the Temporal SQLite file and the local keyring")
	temporalPort := fs.Int("temporal-port", 7233, "Temporal frontend gRPC port")
	uiPort := fs.Int("ui-port", 8233, "Temporal Web UI port")
	demo := fs.Bool("demo", false, "also run the Jira simulator with a demo organization, connection and findings (a fresh demo database and data directory every start)")
	simAddr := fs.String("sim-addr", "127.0.0.1:8090", "listen address of the Jira simulator in demo mode")
	temporalOnly := fs.Bool("temporal-only", false, "run only the embedded Temporal server (and the UI unless --ui-port=0): no migrations, API or worker")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *temporalOnly {
		if *demo {
			return errors.New("--temporal-only and --demo cannot be combined")
		}
		return runTemporalOnly(ctx, *dataDir, *temporalPort, *uiPort)
	}
	start := time.Now()
	if *demo {
		// The demo is throwaway: its own database and data directory, recreated every start, so
		// it never mixes with (or clutters) a developer's persistent dev state.
		*dataDir = filepath.Join(*dataDir, "demo")
		if err := os.RemoveAll(*dataDir); err != nil {
			return err
		}
	}
	defaults := devDefaults(*temporalPort)
	var sim *devstack.Simulator
	if *demo {
		var err error
		if sim, err = devstack.StartSimulator(*simAddr, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			return err
		}
		defer sim.Stop()
		clientID, secret := sim.OAuthClient()
		defaults["JIRA_OAUTH_CLIENT_ID"] = clientID
		defaults["JIRA_OAUTH_CLIENT_SECRET"] = secret
		defaults["JIRA_AUTH_URL"] = sim.URL
		defaults["JIRA_API_URL"] = sim.URL
	}
	ownerURL, appURL, err := databaseURLs(os.LookupEnv, *demo)
	if err != nil {
		return err
	}
	cfg, err := config.LoadFrom(func(name string) (string, bool) {
		switch name {
		case "DATABASE_OWNER_URL":
			return ownerURL, true
		case "DATABASE_URL":
			return appURL, true
		}
		if v, ok := os.LookupEnv(name); ok {
			return v, true
		}
		v, ok := defaults[name]
		return v, ok
	})
	if err != nil {
		return err
	}
	log := cfg.NewLogger()
	absData, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	if err := prepareDatabase(ctx, cfg.DatabaseOwnerURL, *demo, log); err != nil {
		return err
	}

	tsrv, err := devstack.StartTemporal(devstack.TemporalOptions{
		DataDir: absData, FrontendPort: *temporalPort, Namespace: cfg.TemporalNamespace,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := tsrv.Stop(); err != nil {
			log.Warn("stop temporal server", "err", err)
		}
	}()
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = devstack.WaitReady(readyCtx, tsrv.HostPort)
	cancel()
	if err != nil {
		return err
	}
	ui, err := devstack.StartUI("127.0.0.1", *uiPort, tsrv.HostPort, cfg.TemporalNamespace)
	if err != nil {
		return err
	}
	defer ui.Stop()

	core, err := app.NewCore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer core.Close()
	tc, err := core.DialTemporal(ctx)
	if err != nil {
		return err
	}
	defer tc.Close()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return core.RunAPI(gctx, tc) })
	g.Go(func() error { return core.RunWorker(gctx, tc) })

	keyring, err := filepath.Abs(cfg.LocalKeyringDir)
	if err != nil {
		return err
	}
	fmt.Fprint(os.Stderr, banner(bannerInfo{
		elapsed: time.Since(start), api: localURL(cfg.APIAddr), ops: localURL(cfg.OpsAddr), ui: ui.URL,
		temporal: tsrv.HostPort, namespace: cfg.TemporalNamespace, taskQueue: cfg.TaskQueue,
		db: redactURL(cfg.DatabaseURL), ownerDB: redactURL(cfg.DatabaseOwnerURL), dataDir: absData, keyring: keyring,
		kms: cfg.KMSProvider, demo: *demo,
	}))

	if *demo {
		if err := runDemo(gctx, core, cfg.APIAddr, sim, ui.URL); err != nil {
			log.Error("demo setup failed", "err", err)
		}
	}

	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// devDefaults are the configuration defaults the dev stack sets where the environment is silent:
// the embedded Temporal server, readable logs, and loopback Jira (the simulator, or a trial Data
// Center on this machine). The keyring is deliberately not among them: it is LOCAL_KEYRING_DIR's,
// exactly as for `jiraconnect orgs create` and every other process, whatever --data-dir says, so
// the CLI and the dev stack never seal with different master keys.
func devDefaults(temporalPort int) map[string]string {
	return map[string]string{
		"TEMPORAL_ADDRESS": net.JoinHostPort("127.0.0.1", strconv.Itoa(temporalPort)),
		"LOG_FORMAT":       "text",
		egress.EnvVar:      egress.Loopback,
	}
}

// bannerInfo is what the dev stack's start banner shows.
type bannerInfo struct {
	elapsed                           time.Duration
	api, ops, ui, temporal            string
	namespace, taskQueue, db, ownerDB string
	dataDir, keyring, kms             string
	demo                              bool
}

// banner tells a developer where everything is and what to do next.
func banner(b bannerInfo) string {
	var s strings.Builder
	fmt.Fprintf(&s, "\njiraconnect dev stack is up (%s)\n", b.elapsed.Round(time.Millisecond))
	fmt.Fprintf(&s, "  API            %s   (try: curl %s/readyz)\n", b.api, b.api)
	fmt.Fprintf(&s, "  Metrics        %s/metrics\n", b.ops)
	fmt.Fprintf(&s, "  Temporal UI    %s\n", b.ui)
	fmt.Fprintf(&s, "  Temporal gRPC  %s   namespace %q, task queue %q\n", b.temporal, b.namespace, b.taskQueue)
	fmt.Fprintf(&s, "  Postgres       %s   (as the schema owner: %s)\n", b.db, b.ownerDB)
	fmt.Fprintf(&s, "  Data dir       %s\n", b.dataDir)
	if b.kms == "local" {
		fmt.Fprintf(&s, "  Keyring        %s   (LOCAL_KEYRING_DIR; every process of this database must use it)\n", b.keyring)
	}
	if b.demo {
		s.WriteString("The demo organization, its connection and findings are being created; its API key follows.\n")
	} else {
		s.WriteString("Create an organization:  go run ./cmd/jiraconnect orgs create --name \"Acme\"\n")
	}
	s.WriteString("Press Ctrl-C to stop.\n\n")
	return s.String()
}

// localURL is the URL a developer on this machine uses for a listen address: a wildcard or
// empty host is reached as localhost, a specific host as itself.
func localURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// demoDatabase is the demo's throwaway database, dropped and recreated at every start.
const demoDatabase = "jiraconnect_demo"

// databaseURLs returns the dev stack's database URLs: the schema owner's, which migrates, and the
// application's, which the API and the worker log in with, as in production. The owner is
// DATABASE_OWNER_URL (default: the local superuser). The application logs in with DATABASE_URL when
// it is set, and otherwise as the application role on the owner's server and database without a
// password, which a local Postgres trusting connections from the machine accepts (prepareDatabase
// lets the role log in). The demo uses the same server with its own database, whatever the URLs
// name, so that it never drops a developer's database.
func databaseURLs(lookup func(string) (string, bool), demo bool) (ownerURL, appURL string, err error) {
	get := func(name string) string {
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return ""
	}
	ownerURL = get("DATABASE_OWNER_URL")
	if ownerURL == "" {
		for _, v := range config.Vars() {
			if v.Name == "DATABASE_OWNER_URL" {
				ownerURL = v.Default
			}
		}
	}
	appURL = get("DATABASE_URL")
	if appURL == "" {
		if appURL, err = db.AppLoginURL(ownerURL); err != nil {
			return "", "", fmt.Errorf("DATABASE_OWNER_URL: %w", err)
		}
	}
	if demo {
		if ownerURL, err = withDatabase(ownerURL, demoDatabase); err != nil {
			return "", "", fmt.Errorf("DATABASE_OWNER_URL: %w", err)
		}
		if appURL, err = withDatabase(appURL, demoDatabase); err != nil {
			return "", "", fmt.Errorf("DATABASE_URL: %w", err)
		}
	}
	return ownerURL, appURL, nil
}

// withDatabase is the Postgres URL raw naming database name instead.
func withDatabase(raw, name string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("must be a postgres:// URL")
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

// prepareDatabase does, as the schema owner, what an operator and `jiraconnect migrate` do in
// production: it creates the database if it is missing (dropping it first when fresh), applies the
// migrations, loads the control catalogue and lets the application role log in.
func prepareDatabase(ctx context.Context, ownerURL string, fresh bool, log *slog.Logger) error {
	if fresh {
		if err := db.DropDatabase(ctx, ownerURL); err != nil {
			return err
		}
	}
	if err := db.EnsureDatabase(ctx, ownerURL); err != nil {
		return err
	}
	if err := db.Migrate(ctx, ownerURL, log); err != nil {
		return err
	}
	if err := app.SyncCatalogue(ctx, ownerURL); err != nil {
		return err
	}
	return db.EnableAppLogin(ctx, ownerURL)
}

// runTemporalOnly runs the embedded Temporal server (persisted in dataDir, as in the full stack)
// until ctx ends, then stops it. It prints one "temporal ready" line once the frontend accepts
// connections, so a supervising process can wait for it.
func runTemporalOnly(ctx context.Context, dataDir string, temporalPort, uiPort int) error {
	// Only the namespace matters here; the rest of the configuration (database, keys, addresses)
	// belongs to processes this mode does not run, so it is not loaded or validated.
	namespace := strings.TrimSpace(os.Getenv("TEMPORAL_NAMESPACE"))
	if namespace == "" {
		namespace = "default"
	}
	absData, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	start := time.Now()
	tsrv, err := devstack.StartTemporal(devstack.TemporalOptions{DataDir: absData, FrontendPort: temporalPort, Namespace: namespace})
	if err != nil {
		return err
	}
	defer func() {
		if err := tsrv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "jiraconnect-dev: stop temporal server:", err)
		}
	}()
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = devstack.WaitReady(readyCtx, tsrv.HostPort)
	cancel()
	if err != nil {
		return err
	}
	uiURL := "disabled"
	if uiPort != 0 {
		ui, err := devstack.StartUI("127.0.0.1", uiPort, tsrv.HostPort, namespace)
		if err != nil {
			return err
		}
		defer ui.Stop()
		uiURL = ui.URL
	}
	fmt.Fprintf(os.Stderr, "temporal ready on %s (namespace %q, data dir %s, UI %s, %s)\n",
		tsrv.HostPort, namespace, absData, uiURL, time.Since(start).Round(time.Millisecond))
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "temporal stopping")
	return nil
}

// runDemo creates the demo organization and connection once the API answers, and prints what to
// try.
func runDemo(ctx context.Context, core *app.Core, apiAddr string, sim *devstack.Simulator, uiURL string) error {
	_, port, _ := net.SplitHostPort(apiAddr)
	apiBase := "http://127.0.0.1:" + port
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(apiBase + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("api not ready at %s", apiBase)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, key, err := core.Tenancy.CreateOrg(ctx, "Demo", audit.Actor{Type: audit.ActorCLI, ID: "jiraconnect-dev --demo"})
	if err != nil {
		return err
	}
	d, err := devstack.SeedDemo(ctx, apiBase, key.Plaintext, sim)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, `
Demo ready: a simulated Jira Cloud site at %s with 12 projects and 2,500 issues.
  export KEY=%s
  curl -s %s/v1/coverage -H "Authorization: Bearer $KEY"
  curl -s '%s/v1/evidence?limit=5' -H "Authorization: Bearer $KEY"
  curl -s %s/v1/connections/%s/runs -H "Authorization: Bearer $KEY"
  curl -s -X POST %s/v1/connections/%s/sync -H "Authorization: Bearer $KEY"
  curl -s '%s/v1/findings' -H "Authorization: Bearer $KEY"        # high findings get Jira issues
  curl -s -u 'admin@example.com:%s' '%s/rest/api/3/search/jql?jql=project%%3DSEC%%20AND%%20labels%%3Djiraconnect&fields=summary,status'
  # move one in "Jira" and watch the finding follow (webhook → workflow signal):
  curl -s -X POST %s/_sim/issues/SEC-<n>/transition -d '{"status":"In Progress"}'
  Workflow: %s/namespaces/default/workflows/jira-connection%%2F%s

`, sim.URL, key.Plaintext, apiBase, apiBase, apiBase, d.ConnectionID, apiBase, d.ConnectionID, apiBase, sim.APIToken("admin@example.com"), sim.URL, sim.URL, uiURL, d.ConnectionID)
	return nil
}

// redactURL hides any password in a database URL before printing it.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}
