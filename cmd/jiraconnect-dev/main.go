// Command jiraconnect-dev is the local development stack (`make dev`): in one process it runs an
// embedded Temporal server persisted to SQLite, the Temporal Web UI, the database migrations, the
// API and a worker. Ctrl-C stops everything cleanly; state in the data directory and in Postgres
// survives restarts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/jiraconnect/jiraconnect/app"
	"github.com/jiraconnect/jiraconnect/config"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "jiraconnect-dev:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("jiraconnect-dev", flag.ContinueOnError)
	dataDir := fs.String("data-dir", ".jiraconnect", "directory for the Temporal SQLite file and the local keyring")
	temporalPort := fs.Int("temporal-port", 7233, "Temporal frontend gRPC port")
	uiPort := fs.Int("ui-port", 8233, "Temporal Web UI port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Now()
	// The dev stack defaults the keyring into its data directory and the Temporal address to the
	// embedded server, unless the environment says otherwise.
	defaults := map[string]string{
		"LOCAL_KEYRING_DIR": *dataDir,
		"TEMPORAL_ADDRESS":  net.JoinHostPort("127.0.0.1", strconv.Itoa(*temporalPort)),
		"LOG_FORMAT":        "text",
	}
	cfg, err := config.LoadFrom(func(name string) (string, bool) {
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

	if err := db.EnsureDatabase(ctx, cfg.DatabaseOwnerURL); err != nil {
		return err
	}
	if err := db.Migrate(ctx, cfg.DatabaseOwnerURL, log); err != nil {
		return err
	}
	if err := app.SyncCatalogue(ctx, cfg.DatabaseOwnerURL); err != nil {
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

	fmt.Fprintf(os.Stderr, `
jiraconnect dev stack is up (%s)
  API            http://localhost%s   (try: curl localhost%s/readyz)
  Temporal UI    %s
  Temporal gRPC  %s   namespace %q, task queue %q
  Postgres       %s
  Data dir       %s
Create an organization:  go run ./cmd/jiraconnect orgs create --name "Acme"
Press Ctrl-C to stop.

`, time.Since(start).Round(time.Millisecond), cfg.APIAddr, cfg.APIAddr, ui.URL, tsrv.HostPort, cfg.TemporalNamespace,
		cfg.TaskQueue, redactURL(cfg.DatabaseURL), absData)

	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("dev stack stopped")
	return err
}

// redactURL hides any password in a database URL before printing it.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}
