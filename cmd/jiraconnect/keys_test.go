package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/db/dbtest"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) {
	code := dbtest.Run(m, &testDB)
	if builtBin != "" {
		_ = os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// cliRun is one run of the built binary.
type cliRun struct {
	code           int
	stdout, stderr string
}

// cli runs the production binary as an operator would, with nothing from the test's environment
// but PATH and HOME, against the test database.
type cli struct {
	t   *testing.T
	bin string
	env []string
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

func newCLI(t *testing.T) *cli {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "jiraconnect-cli-test")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "jiraconnect")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	dir := t.TempDir()
	return &cli{t: t, bin: builtBin, env: []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"DATABASE_URL=" + testDB.AppURL, "DATABASE_OWNER_URL=" + testDB.OwnerURL,
		"LOCAL_KEYRING_DIR=" + filepath.Join(dir, "keyring"), "LOG_LEVEL=error",
	}}
}

func (c *cli) run(args ...string) cliRun {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(c.t, err)
	}
	return cliRun{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

var keyPattern = regexp.MustCompile(`jck_[A-Za-z0-9_-]{43}`)

func countRows(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, testDB.Owner(t).QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// An operator whose organization lost its last admin key mints a new one from the shell, lists
// the keys and revokes the lost one; usage errors exit 2 and write nothing.
func TestKeysCommands(t *testing.T) {
	c := newCLI(t)
	out := c.run("orgs", "create", "--name", "Rescue Corp")
	require.Equal(t, 0, out.code, out.stderr)
	orgID := regexp.MustCompile(`\(([0-9a-f-]{36})\)`).FindStringSubmatch(out.stdout)[1]
	lost := keyPattern.FindString(out.stdout)
	require.NotEmpty(t, lost)
	lostKey := tenancy.HashKey(lost)
	var lostID string
	require.NoError(t, testDB.Owner(t).QueryRow(context.Background(), `SELECT id::text FROM api_keys WHERE key_hash = $1`, lostKey).Scan(&lostID))

	list := c.run("keys", "list", "--org", orgID)
	require.Equal(t, 0, list.code, list.stderr)
	assert.Contains(t, list.stdout, lostID)
	assert.Contains(t, list.stdout, "active")
	assert.Contains(t, list.stdout, "cli:jiraconnect orgs create")
	assert.NotContains(t, list.stdout, lost)

	// The last admin key is protected here too.
	refused := c.run("keys", "revoke", "--org", orgID, "--id", lostID)
	require.Equal(t, 1, refused.code, refused.stderr)
	assert.Contains(t, refused.stderr, "last active admin key")
	assert.Contains(t, refused.stderr, "--force")

	before := countRows(t, `SELECT count(*) FROM api_keys WHERE org_id = $1`, orgID)
	audits := countRows(t, `SELECT count(*) FROM audit_log WHERE org_id = $1`, orgID)
	for _, args := range [][]string{
		{"keys"},
		{"keys", "rotate", "--org", orgID},
		{"keys", "list"},
		{"keys", "list", "--org", "acme"},
		{"keys", "list", "--org", orgID, "extra"},
		{"keys", "list", "--org", orgID, "--bogus"},
		{"keys", "create", "--org", orgID, "--role", "admin"},
		{"keys", "create", "--org", orgID, "--name", "x", "--role", "owner"},
		{"keys", "create", "--org", orgID, "--name", "x", "--role", "admin", "--expires-in", "30d"},
		{"keys", "create", "--org", orgID, "--name", "x", "--role", "admin", "--expires-in", ""},
		{"keys", "create", "--org", orgID, "--name", "x", "--role", "admin", "--expires-at", "2020-01-01T00:00:00Z"},
		{"keys", "create", "--org", orgID, "--name", "x", "--role", "admin", "--expires-in", "1h", "--expires-at", "2099-01-01T00:00:00Z"},
		{"keys", "revoke", "--org", orgID},
		{"keys", "revoke", "--org", orgID, "--id", "key-1"},
		{"keys", "revoke", "--org", orgID, "--id", lostID, "--force=maybe"},
	} {
		r := c.run(args...)
		assert.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
		assert.Contains(t, r.stderr, "usage: jiraconnect", args)
	}
	bad := c.run("keys", "create", "--org", orgID, "--name", "x", "--role", "admin", "--expires-in", "soon")
	assert.Contains(t, bad.stderr, "--expires-in")
	require.Equal(t, before, countRows(t, `SELECT count(*) FROM api_keys WHERE org_id = $1`, orgID), "usage errors wrote keys")
	require.Equal(t, audits, countRows(t, `SELECT count(*) FROM audit_log WHERE org_id = $1`, orgID), "usage errors wrote audit rows")

	unknown := c.run("keys", "list", "--org", uuid.NewString())
	require.Equal(t, 1, unknown.code)
	assert.Contains(t, unknown.stderr, "organization not found")

	created := c.run("keys", "create", "--org", orgID, "--name", "rescue admin", "--role", "admin", "--expires-in", "24h")
	require.Equal(t, 0, created.code, created.stderr)
	rescue := keyPattern.FindString(created.stdout)
	require.NotEmpty(t, rescue, created.stdout)
	assert.Contains(t, created.stdout, "shown once")

	revoked := c.run("keys", "revoke", "--org", orgID, "--id", lostID)
	require.Equal(t, 0, revoked.code, revoked.stderr)
	assert.Contains(t, revoked.stdout, "revoked")
	again := c.run("keys", "revoke", "--org", orgID, "--id", lostID)
	require.Equal(t, 0, again.code, again.stderr)
	assert.Contains(t, again.stdout, "already revoked")

	asJSON := c.run("keys", "list", "--org", orgID, "--json")
	require.Equal(t, 0, asJSON.code, asJSON.stderr)
	var listed struct {
		APIKeys []tenancy.KeyInfo `json:"api_keys"`
	}
	require.NoError(t, json.Unmarshal([]byte(asJSON.stdout), &listed))
	require.Len(t, listed.APIKeys, 2)
	states := map[string]tenancy.KeyState{}
	for _, k := range listed.APIKeys {
		states[k.Name] = k.State
		if k.Name == "rescue admin" {
			require.NotNil(t, k.ExpiresAt)
			assert.WithinDuration(t, time.Now().Add(24*time.Hour), *k.ExpiresAt, time.Minute)
			assert.Equal(t, &tenancy.KeyActor{Type: "cli", ID: "jiraconnect keys create"}, k.CreatedBy)
		} else {
			assert.Equal(t, &tenancy.KeyActor{Type: "cli", ID: "jiraconnect keys revoke"}, k.RevokedBy)
		}
	}
	assert.Equal(t, map[string]tenancy.KeyState{"rescue admin": tenancy.KeyActive, "initial admin key": tenancy.KeyRevoked}, states)
	assert.NotContains(t, asJSON.stdout, rescue)

	// Each change is audited once with the CLI as actor.
	for action, actor := range map[string]string{"api_key.create": "jiraconnect keys create", "api_key.revoke": "jiraconnect keys revoke"} {
		n := countRows(t, `SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = $2 AND actor_type = 'cli' AND actor_id = $3`, orgID, action, actor)
		assert.Equal(t, 1, n, action)
	}

	// The new key works against the same service code the API uses; the last admin key is now the
	// rescue key, and --force revokes it.
	require.Equal(t, 1, c.run("keys", "revoke", "--org", orgID, "--id", keyID(t, rescue)).code)
	forced := c.run("keys", "revoke", "--org", orgID, "--id", keyID(t, rescue), "--force")
	require.Equal(t, 0, forced.code, forced.stderr)
	require.Equal(t, 0, countRows(t, `SELECT count(*) FROM api_keys WHERE org_id = $1 AND revoked_at IS NULL`, orgID))
}

func keyID(t *testing.T, plaintext string) string {
	t.Helper()
	var id string
	require.NoError(t, testDB.Owner(t).QueryRow(context.Background(), `SELECT id::text FROM api_keys WHERE key_hash = $1`,
		tenancy.HashKey(plaintext)).Scan(&id))
	return id
}

// API_KEY_MAX_TTL bounds keys minted from the shell as well, and a bad value stops the command.
func TestKeysCommandsRespectMaxTTL(t *testing.T) {
	c := newCLI(t)
	c.env = append(c.env, "API_KEY_MAX_TTL=48h")
	out := c.run("orgs", "create", "--name", "Bounded")
	require.Equal(t, 0, out.code, out.stderr)
	orgID := regexp.MustCompile(`\(([0-9a-f-]{36})\)`).FindStringSubmatch(out.stdout)[1]
	too := c.run("keys", "create", "--org", orgID, "--name", "long", "--role", "member", "--expires-in", "72h")
	require.Equal(t, 2, too.code, too.stderr)
	assert.Contains(t, too.stderr, "48h0m0s")
	ok := c.run("keys", "create", "--org", orgID, "--name", "default", "--role", "member")
	require.Equal(t, 0, ok.code, ok.stderr)
	n := countRows(t, `SELECT count(*) FROM api_keys WHERE org_id = $1 AND expires_at BETWEEN now() + interval '47 hours' AND now() + interval '48 hours'`, orgID)
	require.Equal(t, 2, n, "the first admin key and the default key get the maximum lifetime")

	c.env = append(c.env, "API_KEY_MAX_TTL=forever")
	bad := c.run("keys", "list", "--org", orgID)
	require.NotEqual(t, 0, bad.code)
	assert.Contains(t, bad.stderr, "API_KEY_MAX_TTL")
}
