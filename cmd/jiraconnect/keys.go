package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/app"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/config"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

// keysCommand manages an organization's API keys from the operator's shell, through the same
// tenancy code as the API: for an operator whose organization has lost (or revoked) its last
// admin key, and for scripted key rotation. Every change is audited with a CLI actor.
func keysCommand(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"keys: expected `keys list`, `keys create`, `keys revoke`, `keys data-keys`, `keys rotate-data-key`, " +
			"`keys rewrap-data-keys` or `keys rotate-master-key`"}
	}
	if dataKeySubcommands[args[0]] {
		return dataKeysCommand(ctx, cfg, args, stdout, stderr)
	}
	sub := args[0]
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	orgFlag := fs.String("org", "", "organization id (required)")
	var (
		asJSON              *bool
		name, role          *string
		expiresIn, expireAt *string
		keyFlag             *string
		force               *bool
	)
	switch sub {
	case "list":
		asJSON = fs.Bool("json", false, "print JSON ({\"api_keys\": [...]}, as GET /v1/api-keys)")
	case "create":
		name = fs.String("name", "", "key name (required)")
		role = fs.String("role", "", "admin, member or auditor (required)")
		expiresIn = fs.String("expires-in", "", "lifetime, e.g. 720h (at most API_KEY_MAX_TTL)")
		expireAt = fs.String("expires-at", "", "expiry as an RFC 3339 time (at most API_KEY_MAX_TTL from now)")
	case "revoke":
		keyFlag = fs.String("id", "", "id of the key to revoke (required)")
		force = fs.Bool("force", false, "revoke the organization's last active admin key too")
	default:
		return usageError{fmt.Sprintf("keys: unknown subcommand %q", sub)}
	}
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{fmt.Sprintf("keys %s: %v", sub, err)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("keys %s: unexpected argument %q", sub, fs.Arg(0))}
	}
	orgID, err := uuidFlag(sub, "org", *orgFlag)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var keyID uuid.UUID
	var req tenancy.KeyRequest
	switch sub {
	case "create":
		req = tenancy.KeyRequest{Name: *name, Role: *role}
		if set["expires-in"] {
			req.ExpiresIn = expiresIn
		}
		if set["expires-at"] {
			req.ExpiresAt = expireAt
		}
		// Validate before connecting, so a mistyped flag is a usage error whatever the database.
		if _, _, _, err := tenancy.ParseKeyRequest(time.Now(), req, cfg.APIKeyMaxTTL); err != nil {
			return keysUsageError(sub, err)
		}
	case "revoke":
		if keyID, err = uuidFlag(sub, "id", *keyFlag); err != nil {
			return err
		}
	}

	core, err := app.NewCore(ctx, cfg, cfg.NewLogger())
	if err != nil {
		return err
	}
	defer core.Close()
	by := audit.Caller{Actor: audit.Actor{Type: audit.ActorCLI, ID: "jiraconnect keys " + sub}}
	switch sub {
	case "list":
		keys, err := core.Tenancy.ListKeys(ctx, orgID)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(map[string]any{"api_keys": keys})
		}
		return printKeys(stdout, keys)
	case "create":
		key, err := core.Tenancy.CreateKey(ctx, orgID, req, by)
		if err != nil {
			return keysUsageError(sub, err)
		}
		fmt.Fprintf(stdout, "api key: %s %q (%s, %s, expires %s)\nAPI key (shown once, store it now): %s\n",
			key.ID, key.Name, key.Role, key.Prefix, timeOrNever(key.ExpiresAt), key.Plaintext)
		return nil
	default: // revoke
		info, changed, err := core.Tenancy.RevokeKey(ctx, orgID, keyID, *force, by)
		if errors.Is(err, tenancy.ErrLastAdminKey) {
			return fmt.Errorf("keys revoke: %w; create another admin key first (keys create --role admin) or pass --force", err)
		}
		if err != nil {
			return err
		}
		verb := "revoked"
		if !changed {
			verb = "was already revoked"
		}
		fmt.Fprintf(stdout, "api key %s %q (%s, %s) %s at %s\n", info.ID, info.Name, info.Role, info.Prefix, verb,
			timeOrNever(info.RevokedAt))
		return nil
	}
}

// keysUsageError reports an invalid key request under the flag that carries the field.
func keysUsageError(sub string, err error) error {
	var fe *tenancy.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	return usageError{fmt.Sprintf("keys %s: --%s: %s", sub, strings.ReplaceAll(fe.Field, "_", "-"), fe.Message)}
}

func uuidFlag(sub, name, value string) (uuid.UUID, error) {
	if value == "" {
		return uuid.Nil, usageError{fmt.Sprintf("keys %s: --%s is required", sub, name)}
	}
	id, err := uuid.Parse(value)
	if err != nil {
		return uuid.Nil, usageError{fmt.Sprintf("keys %s: --%s: must be a UUID", sub, name)}
	}
	return id, nil
}

func printKeys(w io.Writer, keys []tenancy.KeyInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tPREFIX\tSTATE\tCREATED\tLAST USED\tEXPIRES\tREVOKED\tCREATED BY")
	for _, k := range keys {
		by := "-"
		if k.CreatedBy != nil {
			by = k.CreatedBy.Type + ":" + k.CreatedBy.ID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Role, k.Prefix, k.State,
			k.CreatedAt.Format(time.RFC3339), timeOr(k.LastUsedAt, "-"), timeOrNever(k.ExpiresAt), timeOr(k.RevokedAt, "-"), by)
	}
	return tw.Flush()
}

func timeOrNever(t *time.Time) string { return timeOr(t, "never") }

func timeOr(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}
