package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/server/temporaltest"

	"github.com/jiraconnect/jiraconnect/app"
	"github.com/jiraconnect/jiraconnect/config"
	"github.com/jiraconnect/jiraconnect/worker"
)

// runWorker runs a production worker in the test process with the CLI's environment (same
// database, keyring and Temporal), until the returned function stops it — as a worker process
// that is restarted.
func runWorker(t *testing.T, env []string) (stop func()) {
	t.Helper()
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	cfg, err := config.LoadFrom(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	require.NoError(t, err)
	ctx := context.Background()
	core, err := app.NewCore(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	tc, err := core.DialTemporal(ctx)
	require.NoError(t, err)
	w := worker.New(tc, cfg.TaskQueue, core.Activities)
	require.NoError(t, w.Start())
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		w.Stop()
		tc.Close()
		core.Close()
	}
	t.Cleanup(stop)
	return stop
}

type dataKeysJSON struct {
	Current  int `json:"current_version"`
	Versions []struct {
		Version     int    `json:"version"`
		State       string `json:"state"`
		MasterKeyID string `json:"master_key_id"`
	} `json:"versions"`
}

// An operator rotates an organization's data key from the shell and follows the re-seal to the
// retirement of the old version; then rotates the local keyring's master key and re-wraps every
// data key under it. Usage errors exit 2 and change nothing; with AWS KMS the master key is
// rotated in KMS, which the command explains.
func TestDataKeyCommands(t *testing.T) {
	c := newCLI(t)
	srv := temporaltest.NewServer(temporaltest.WithT(t))
	c.env = append(c.env, "TEMPORAL_ADDRESS="+srv.GetFrontendHostPort(), "TEMPORAL_NAMESPACE="+srv.GetDefaultNamespace(),
		"KEY_CACHE_TTL=1s", "SUPERVISOR_INTERVAL=24h")
	out := c.run("orgs", "create", "--name", "Key Corp")
	require.Equal(t, 0, out.code, out.stderr)
	orgID := regexp.MustCompile(`\(([0-9a-f-]{36})\)`).FindStringSubmatch(out.stdout)[1]
	list := func() dataKeysJSON {
		t.Helper()
		r := c.run("keys", "data-keys", "--org", orgID, "--json")
		require.Equal(t, 0, r.code, r.stderr)
		var v dataKeysJSON
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &v))
		return v
	}
	table := c.run("keys", "data-keys", "--org", orgID)
	require.Equal(t, 0, table.code, table.stderr)
	assert.Regexp(t, `(?m)^1\s+current\s+0\s`, table.stdout)

	for _, args := range [][]string{
		{"keys", "rotate-data-key"},
		{"keys", "rotate-data-key", "--org", "not-a-uuid"},
		{"keys", "data-keys", "--org", orgID, "extra"},
		{"keys", "rewrap-data-keys", "--org", orgID},
	} {
		r := c.run(args...)
		assert.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
	}
	assert.Equal(t, 1, list().Current, "usage errors change nothing")

	stop := runWorker(t, c.env)
	rot := c.run("keys", "rotate-data-key", "--org", orgID, "--wait")
	require.Equal(t, 0, rot.code, rot.stderr)
	assert.Contains(t, rot.stdout, "data key version 2 is current")
	assert.Contains(t, rot.stdout, "org-key-reseal/"+orgID+"/v2")
	assert.Contains(t, rot.stdout, "retired versions: [1]")
	v := list()
	assert.Equal(t, 2, v.Current)
	require.Len(t, v.Versions, 2)
	assert.Equal(t, "retired", v.Versions[1].State)
	assert.Equal(t, 1, countRows(t, `SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'org_key.rotate' AND actor_type = 'cli'`, orgID))
	oldMaster := v.Versions[0].MasterKeyID

	// Rotate the local master key; workers read the keyring at start, so restart ours.
	mk := c.run("keys", "rotate-master-key")
	require.Equal(t, 0, mk.code, mk.stderr)
	assert.Contains(t, mk.stdout, oldMaster+" is kept as retired")
	stop()
	runWorker(t, c.env)
	rw := c.run("keys", "rewrap-data-keys", "--wait")
	// Organizations of other tests of this package were created with other keyrings and cannot
	// be re-wrapped with this one; ours must not be among the failures.
	assert.NotContains(t, rw.stderr, orgID)
	assert.Contains(t, rw.stdout, "re-wrap of every organization's data keys started: workflow org-key-rewrap")
	v = list()
	assert.NotEqual(t, oldMaster, v.Versions[0].MasterKeyID, "the live version is wrapped under the new master key")
	assert.Equal(t, oldMaster, v.Versions[1].MasterKeyID, "a retired version is left as it was")
	assert.Equal(t, 1, countRows(t, `SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'org_key.rewrap'`, orgID))

	// With the old master key's file gone, the data key still unwraps: a rotation works.
	var keyringDir string
	for _, kv := range c.env {
		if d, ok := strings.CutPrefix(kv, "LOCAL_KEYRING_DIR="); ok {
			keyringDir = d
		}
	}
	retired, err := filepath.Glob(filepath.Join(keyringDir, "seal-master.*.retired"))
	require.NoError(t, err)
	require.Len(t, retired, 1)
	require.NoError(t, os.Remove(retired[0]))
	again := c.run("keys", "rotate-data-key", "--org", orgID)
	require.Equal(t, 0, again.code, again.stderr)

	aws := &cli{t: t, bin: c.bin, env: append(append([]string{}, c.env...), "KMS_PROVIDER=aws", "KMS_KEY_ID=alias/x", "AWS_REGION=us-east-1")}
	refused := aws.run("keys", "rotate-master-key")
	assert.Equal(t, 1, refused.code)
	assert.Contains(t, refused.stderr, "rewrap-data-keys")
}
