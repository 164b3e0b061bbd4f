package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/app"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/config"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
	"github.com/jiraconnect/jiraconnect/workflowclient"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// dataKeySubcommands are the `keys` subcommands about organizations' data keys (the sealing keys)
// and the master key that wraps them, as opposed to API keys.
var dataKeySubcommands = map[string]bool{"data-keys": true, "rotate-data-key": true, "rewrap-data-keys": true, "rotate-master-key": true}

// dataKeysCommand rotates and lists data keys and re-wraps them after a master key change. The
// background work runs as Temporal workflows on the workers (visible in the Temporal UI); --wait
// follows it to the end.
func dataKeysCommand(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	sub := args[0]
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var orgFlag *string
	var asJSON, wait *bool
	switch sub {
	case "data-keys":
		orgFlag = fs.String("org", "", "organization id (required)")
		asJSON = fs.Bool("json", false, "print JSON ({\"current_version\": …, \"versions\": [...]}, as GET /v1/orgs/me/keys)")
	case "rotate-data-key":
		orgFlag = fs.String("org", "", "organization id (required)")
		wait = fs.Bool("wait", false, "wait until the re-seal has finished and the old version is retired")
	case "rewrap-data-keys":
		wait = fs.Bool("wait", false, "wait until every organization's data keys are re-wrapped")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{fmt.Sprintf("keys %s: %v", sub, err)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("keys %s: unexpected argument %q", sub, fs.Arg(0))}
	}
	var orgID uuid.UUID
	if orgFlag != nil {
		var err error
		if orgID, err = uuidFlag(sub, "org", *orgFlag); err != nil {
			return err
		}
	}
	if sub == "rotate-master-key" {
		return rotateMasterKey(cfg, stdout)
	}
	core, err := app.NewCore(ctx, cfg, cfg.NewLogger())
	if err != nil {
		return err
	}
	defer core.Close()
	if sub == "data-keys" {
		keys, err := core.Tenancy.ListDataKeys(ctx, orgID)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(map[string]any{"current_version": tenancy.CurrentVersion(keys), "versions": keys})
		}
		return printDataKeys(stdout, keys)
	}
	// The re-seal and the re-wrap are workflows: reach Temporal before changing anything.
	tc, err := core.DialTemporal(ctx)
	if err != nil {
		return err
	}
	defer tc.Close()
	wc := workflowclient.New(tc, cfg.TaskQueue, cfg.FindingReconcileInterval)
	if sub == "rewrap-data-keys" {
		run, started, err := wc.StartOrgKeyRewrap(ctx)
		if err != nil {
			return err
		}
		verb := "started"
		if !started {
			verb = "already running"
		}
		fmt.Fprintf(stdout, "re-wrap of every organization's data keys %s: workflow %s (run %s)\n", verb, run.GetID(), run.GetRunID())
		if !*wait {
			return nil
		}
		var res activities.RewrapResult
		if err := run.Get(ctx, &res); err != nil {
			return fmt.Errorf("re-wrap: %w", err)
		}
		fmt.Fprintf(stdout, "organizations: %d, versions: %d, re-wrapped: %d, already current: %d, changed meanwhile: %d, master keys now: %v\n",
			res.Orgs, res.Versions, res.Rewrapped, res.Current, res.Skipped, res.MasterKeyIDs)
		if len(res.FailedOrgs) > 0 {
			return fmt.Errorf("re-wrap failed for %d organization(s): %v (see the worker log; the old master key must stay usable until a pass completes)",
				len(res.FailedOrgs), res.FailedOrgs)
		}
		return nil
	}
	// rotate-data-key
	rotator := tenancy.KeyRotator{Keys: core.Tenancy, Reseals: wc, Log: core.Log}
	r, err := rotator.Rotate(ctx, orgID, audit.Caller{Actor: audit.Actor{Type: audit.ActorCLI, ID: "jiraconnect keys rotate-data-key"}}, "cli")
	if err != nil {
		return err
	}
	id := r.ResealWorkflowID
	if !r.ResealStarted {
		return fmt.Errorf("data key rotated to version %d, but its re-seal workflow %s was not started (the daily key rotation pass will start it; see the log)", r.Version, id)
	}
	fmt.Fprintf(stdout, "organization %s: data key version %d is current (was %d, master key %s); re-seal workflow %s\n",
		orgID, r.Version, r.PreviousVersion, r.MasterKeyID, id)
	if !*wait {
		return nil
	}
	var res workflows.OrgKeyResealResult
	if err := tc.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
		return fmt.Errorf("re-seal: %w", err)
	}
	fmt.Fprintf(stdout, "re-sealed: %d, unreadable: %d, retired versions: %v, still in use: %v\n",
		res.Reseal.Resealed, res.Reseal.Unreadable, res.Retired, res.InUse)
	return nil
}

// rotateMasterKey gives the local keyring a new master key. With AWS KMS the operator rotates or
// replaces the key in KMS instead, which this command says.
func rotateMasterKey(cfg *config.Config, stdout io.Writer) error {
	if cfg.KMSProvider != "local" {
		return fmt.Errorf("keys rotate-master-key: KMS_PROVIDER=%s: rotate the master key in KMS instead — create a new key (or let KMS "+
			"rotate the key's material, which needs nothing here), point KMS_KEY_ID (or its alias) at it, restart every process, then run "+
			"`jiraconnect keys rewrap-data-keys --wait`; keep the old key enabled until that reports one master key", cfg.KMSProvider)
	}
	oldID, newID, err := seal.RotateLocalMasterKey(cfg.LocalKeyringDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "local keyring %s: master key %s is current; %s is kept as retired and still unwraps what it wrapped.\n"+
		"Restart every process (they read the keyring when they start), then run `jiraconnect keys rewrap-data-keys --wait`.\n",
		cfg.LocalKeyringDir, newID, oldID)
	return nil
}

func printDataKeys(w io.Writer, keys []tenancy.KeyVersion) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATE\tSEALED VALUES\tCREATED\tWRAPPED\tRETIRED\tMASTER KEY")
	for _, k := range keys {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\n", k.Version, k.State, k.SealedValues, k.CreatedAt.Format(time.RFC3339),
			k.WrappedAt.Format(time.RFC3339), timeOr(k.RetiredAt, "-"), k.MasterKeyID)
	}
	return tw.Flush()
}
