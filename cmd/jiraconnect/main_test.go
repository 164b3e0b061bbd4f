package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The production binary must not link the Temporal server: it is large, has its own security
// surface, and production talks to an external cluster.
func TestProductionBinaryDoesNotLinkTemporalServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("suspiciously few dependencies: %d", len(deps))
	}
	var sdk bool
	for _, d := range deps {
		if strings.HasPrefix(d, "go.temporal.io/server") || strings.HasPrefix(d, "github.com/temporalio/ui-server") {
			t.Errorf("cmd/jiraconnect links %s", d)
		}
		sdk = sdk || d == "go.temporal.io/sdk/client"
	}
	if !sdk {
		t.Error("cmd/jiraconnect does not link the Temporal SDK client; the dependency list is not what it seems")
	}
}

func TestCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "jiraconnect ") {
		t.Fatalf("version: %q %v", out.String(), err)
	}
	for _, args := range [][]string{nil, {"frobnicate"}} {
		err := run(context.Background(), args, &out, &errOut)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("run(%v): %v, want a usage error", args, err)
		}
	}
}

// setDatabaseEnv points the commands at the test database; TEMPORAL_ADDRESS names a port nothing
// listens on, so a command that got as far as Temporal fails instead of serving.
func setDatabaseEnv(t *testing.T, appURL string) {
	t.Setenv("DATABASE_URL", appURL)
	t.Setenv("DATABASE_OWNER_URL", testDB.OwnerURL)
	t.Setenv("DATABASE_ALLOW_PRIVILEGED_LOGIN", "")
	t.Setenv("LOCAL_KEYRING_DIR", t.TempDir())
	t.Setenv("KMS_PROVIDER", "local")
	t.Setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
	t.Setenv("LOG_LEVEL", "error")
}

// api, worker and orgs create refuse to run with a superuser login (the owner of the test
// database), before anything is written.
func TestCommandsRefuseAPrivilegedLogin(t *testing.T) {
	setDatabaseEnv(t, testDB.OwnerURL)
	for _, args := range [][]string{{"api"}, {"worker"}, {"orgs", "create", "--name", "Refused"}} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		require.Error(t, err, "%v started with a superuser login", args)
		assert.Contains(t, err.Error(), "may not run the application: it is a superuser", "%v", args)
		assert.NotContains(t, out.String(), "admin API key")
	}
	var n int
	require.NoError(t, testDB.Owner(t).QueryRow(context.Background(), `SELECT count(*) FROM organizations WHERE name = 'Refused'`).Scan(&n))
	assert.Zero(t, n)
}

// An operator's first steps: migrate as the owner, then create an organization as the
// application role (CreateOrg writes the org, its key and its audit row inside the new org's
// row-level-security scope, so the owner is not needed).
func TestMigrateThenOrgsCreateAsTheApplicationRole(t *testing.T) {
	setDatabaseEnv(t, testDB.AppURL)
	ctx := context.Background()
	var out, errOut bytes.Buffer
	require.NoError(t, run(ctx, []string{"migrate"}, &out, &errOut), errOut.String())
	require.NoError(t, run(ctx, []string{"orgs", "create", "--name", "Acme"}, &out, &errOut), errOut.String())
	assert.Contains(t, out.String(), "admin API key (shown once, store it now): jck_")
	owner := testDB.Owner(t)
	var orgs, audits int
	require.NoError(t, owner.QueryRow(ctx, `SELECT count(*) FROM organizations WHERE name = 'Acme'`).Scan(&orgs))
	require.NoError(t, owner.QueryRow(ctx, `SELECT count(*) FROM audit_log a JOIN organizations o ON o.id = a.org_id
		WHERE o.name = 'Acme' AND a.action = 'org.create'`).Scan(&audits))
	assert.Equal(t, 1, orgs)
	assert.Equal(t, 1, audits)
}
