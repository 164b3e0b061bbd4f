// Command jiraconnect is the production binary: `api`, `worker`, `migrate`, `orgs create`,
// `keys list|create|revoke|data-keys|rotate-data-key|rewrap-data-keys|rotate-master-key` and
// `version`. It never links the Temporal server (a test checks its dependency list); the dev stack
// lives in cmd/jiraconnect-dev.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/jiraconnect/jiraconnect/app"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/config"
	"github.com/jiraconnect/jiraconnect/db"
)

const usage = `usage: jiraconnect <command> [flags]

commands:
  api                    serve the HTTP API (API_ADDR)
  worker                 run the Temporal worker (TEMPORAL_TASK_QUEUE) and its ops server (WORKER_ADDR)
  migrate                apply database migrations as the schema owner (DATABASE_OWNER_URL)
  orgs create --name N   create an organization and print its first admin API key (shown once)
  keys list --org ID [--json]
                         list an organization's API keys (never their secrets)
  keys create --org ID --name N --role admin|member|auditor [--expires-in 720h | --expires-at RFC3339]
                         mint an API key and print it (shown once), e.g. to replace a lost admin key
  keys revoke --org ID --id KEY_ID [--force]
                         revoke an API key at once (--force for the organization's last admin key)
  keys data-keys --org ID [--json]
                         list the versions of an organization's data key (never key material)
  keys rotate-data-key --org ID [--wait]
                         rotate an organization's data key; a Temporal workflow re-seals its secrets
                         and retires the old version (--wait follows it)
  keys rewrap-data-keys [--wait]
                         re-wrap every organization's data keys under the workers' current master key
                         (after KMS_KEY_ID changed or the local master key was rotated)
  keys rotate-master-key
                         give the local keyring (KMS_PROVIDER=local) a new master key, keeping the old
                         one to unwrap until the re-wrap
  version                print the version

api, worker and orgs create log in with DATABASE_URL as the application role jiraconnect_app and
refuse a login that could bypass row-level security. Configuration comes from environment
variables; see README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "jiraconnect:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg + "\n\n" + usage }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command given"}
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, "jiraconnect", app.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "api", "worker", "migrate", "orgs", "keys":
	default:
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log := cfg.NewLogger()
	switch args[0] {
	case "migrate":
		if err := db.Migrate(ctx, cfg.DatabaseOwnerURL, log); err != nil {
			return err
		}
		return app.SyncCatalogue(ctx, cfg.DatabaseOwnerURL)
	case "orgs":
		return orgsCommand(ctx, cfg, args[1:], stdout, stderr)
	case "keys":
		return keysCommand(ctx, cfg, args[1:], stdout, stderr)
	}
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
	if args[0] == "api" {
		return core.RunAPI(ctx, tc)
	}
	return core.RunWorker(ctx, tc)
}

func orgsCommand(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return usageError{"orgs: expected `orgs create --name NAME`"}
	}
	fs := flag.NewFlagSet("orgs create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "organization name (required)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if *name == "" {
		return usageError{"orgs create: --name is required"}
	}
	core, err := app.NewCore(ctx, cfg, cfg.NewLogger())
	if err != nil {
		return err
	}
	defer core.Close()
	org, key, err := core.Tenancy.CreateOrg(ctx, *name, audit.Actor{Type: audit.ActorCLI, ID: "jiraconnect orgs create"})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "organization: %s (%s)\nadmin API key (shown once, store it now): %s\n", org.Name, org.ID, key.Plaintext)
	return nil
}
