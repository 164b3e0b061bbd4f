package api_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/api"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

// newKeyEnv is an API server with its own pool, as a separate API process would have, whose
// operator sets API_KEY_MAX_TTL to maxTTL (0: none).
func newKeyEnv(t *testing.T, maxTTL time.Duration) *env {
	t.Helper()
	d := testDB.Open(t)
	kr, err := seal.OpenLocalKeyring(t.TempDir())
	require.NoError(t, err)
	sealer, err := seal.New(kr, tenancy.KeyStore{DB: d}, seal.Options{})
	require.NoError(t, err)
	svc := &tenancy.Service{DB: d, Sealer: sealer, MaxKeyTTL: maxTTL}
	s := api.New(api.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DB: d, Tenancy: svc,
		TemporalHealth: api.PingFunc(okPing), MaxBodyBytes: 4096, Version: "test"})
	srv := httptest.NewServer(checked(t, s.Handler()))
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close)
	return &env{t: t, srv: srv, tenancy: svc}
}

func (e *env) createKey(admin, body string) (id, key string) {
	e.t.Helper()
	r := e.do("POST", "/v1/api-keys", admin, "application/json", body)
	require.Equal(e.t, 201, r.status, r.raw)
	return r.body["id"].(string), r.body["key"].(string)
}

func (e *env) listKeys(admin string) map[string]map[string]any {
	e.t.Helper()
	r := e.do("GET", "/v1/api-keys", admin, "", "")
	require.Equal(e.t, 200, r.status, r.raw)
	out := map[string]map[string]any{}
	for _, k := range r.body["api_keys"].([]any) {
		m := k.(map[string]any)
		out[m["id"].(string)] = m
	}
	return out
}

// keyAudits returns the org's audit rows of action, newest first, as the owner sees them.
func keyAudits(t *testing.T, org uuid.UUID, action string) []map[string]any {
	t.Helper()
	rows, err := testDB.Owner(t).Query(context.Background(),
		`SELECT jsonb_build_object('actor_type', actor_type, 'actor_id', actor_id, 'target_id', target_id,
		        'source_ip', host(source_ip), 'metadata', metadata)
		 FROM audit_log WHERE org_id = $1 AND action = $2 ORDER BY id DESC`, org, action)
	require.NoError(t, err)
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var m map[string]any
		require.NoError(t, rows.Scan(&m))
		out = append(out, m)
	}
	require.NoError(t, rows.Err())
	return out
}

func adminKeyID(t *testing.T, e *env, admin string) string {
	t.Helper()
	p, err := e.tenancy.Authenticate(context.Background(), admin)
	require.NoError(t, err)
	return p.KeyID.String()
}

func TestRevokeAPIKeyTakesEffectOnEveryProcess(t *testing.T) {
	t.Parallel()
	a := newKeyEnv(t, 0)
	b := newKeyEnv(t, 0) // another API process on the same database
	org, admin := a.org("revoke-org")
	memberID, member := a.createKey(admin, `{"name":"ci runner","role":"member"}`)
	auditorID, auditor := a.createKey(admin, `{"name":"auditor","role":"auditor"}`)
	for _, e := range []*env{a, b} {
		r := e.do("GET", "/v1/orgs/me", member, "", "")
		require.Equal(t, 200, r.status, r.raw)
	}

	// Only admins revoke.
	for _, k := range []string{member, auditor} {
		r := a.do("DELETE", "/v1/api-keys/"+memberID, k, "", "")
		require.Equal(t, 403, r.status, r.raw)
	}

	r := a.do("DELETE", "/v1/api-keys/"+memberID, admin, "", "")
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "revoked", r.body["state"])
	assert.Equal(t, memberID, r.body["id"])
	assert.NotNil(t, r.body["revoked_at"])
	assert.Equal(t, map[string]any{"type": "api_key", "id": adminKeyID(t, a, admin)}, r.body["revoked_by"])
	assert.NotContains(t, r.body, "key")

	// The very next request, on either process, is refused.
	for _, e := range []*env{a, b} {
		r := e.do("GET", "/v1/orgs/me", member, "", "")
		require.Equal(t, 401, r.status, r.raw)
		require.Equal(t, "unauthorized", errField(r, "code"))
	}
	other := b.do("GET", "/v1/orgs/me", auditor, "", "")
	require.Equal(t, 200, other.status, "revoking one key affected another: %s", other.raw)

	// Idempotent: revoking again answers the same revocation and audits nothing more.
	again := b.do("DELETE", "/v1/api-keys/"+memberID, admin, "", "")
	require.Equal(t, 200, again.status, again.raw)
	assert.Equal(t, r.body["revoked_at"], again.body["revoked_at"])
	rows := keyAudits(t, org.ID, "api_key.revoke")
	require.Len(t, rows, 1)
	assert.Equal(t, "api_key", rows[0]["actor_type"])
	assert.Equal(t, adminKeyID(t, a, admin), rows[0]["actor_id"])
	assert.Equal(t, memberID, rows[0]["target_id"])
	assert.Equal(t, "127.0.0.1", rows[0]["source_ip"])
	meta := rows[0]["metadata"].(map[string]any)
	assert.Equal(t, "ci runner", meta["name"])
	assert.Equal(t, "member", meta["role"])
	assert.Equal(t, member[:10], meta["prefix"])

	keys := a.listKeys(admin)
	assert.Equal(t, "revoked", keys[memberID]["state"])
	assert.Equal(t, "active", keys[auditorID]["state"])

	for _, path := range []string{"/v1/api-keys/not-a-uuid", "/v1/api-keys/" + uuid.NewString()} {
		r := a.do("DELETE", path, admin, "", "")
		require.Equal(t, 404, r.status, r.raw)
		require.Equal(t, "not_found", errField(r, "code"))
	}
}

func TestListAPIKeysShowsTheLifecycleNeverTheSecret(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t, 0)
	org, admin := e.org("list-org")
	memberID, member := e.createKey(admin, `{"name":"temp","role":"member","expires_in":"2h"}`)
	require.Equal(t, 200, e.do("GET", "/v1/orgs/me", member, "", "").status)

	r := e.do("GET", "/v1/api-keys", admin, "", "")
	require.Equal(t, 200, r.status, r.raw)
	for _, secret := range []string{admin, member, admin[10:], member[10:]} {
		require.NotContains(t, r.raw, secret)
	}
	require.NotContains(t, r.raw, "hash")
	keys := e.listKeys(admin)
	require.Len(t, keys, 2)
	m := keys[memberID]
	for _, field := range []string{"id", "name", "role", "prefix", "state", "created_at", "created_by", "last_used_at", "expires_at", "revoked_at", "revoked_by"} {
		require.Contains(t, m, field)
	}
	assert.NotContains(t, m, "key")
	assert.Equal(t, "active", m["state"])
	assert.NotNil(t, m["last_used_at"])
	assert.Nil(t, m["revoked_at"])
	exp, err := time.Parse(time.RFC3339, m["expires_at"].(string))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(2*time.Hour), exp, time.Minute)
	assert.Equal(t, map[string]any{"type": "api_key", "id": adminKeyID(t, e, admin)}, m["created_by"])
	for id, k := range keys {
		if id != memberID {
			assert.Equal(t, map[string]any{"type": "cli", "id": "test"}, k["created_by"])
			assert.Nil(t, k["expires_at"])
		}
	}
	created := keyAudits(t, org.ID, "api_key.create")
	require.Len(t, created, 1)
	assert.Equal(t, m["expires_at"], created[0]["metadata"].(map[string]any)["expires_at"])
}

// An expired key gets 401 like an unknown one. The key is stored as the owner with an expiry in the
// past, so the test needs no clock.
func TestExpiredAPIKeyIsRefused(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t, 0)
	org, admin := e.org("expired-org")
	var b [32]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	expired := "jck_" + base64.RawURLEncoding.EncodeToString(b[:])
	var id string
	err = testDB.Owner(t).QueryRow(context.Background(),
		`INSERT INTO api_keys (org_id, name, role, prefix, key_hash, created_at, expires_at)
		 VALUES ($1, 'old', 'admin', $2, $3, now() - interval '1 hour', now() - interval '1 millisecond') RETURNING id::text`,
		org.ID, expired[:10], tenancy.HashKey(expired)).Scan(&id)
	require.NoError(t, err)

	r := e.do("GET", "/v1/orgs/me", expired, "", "")
	require.Equal(t, 401, r.status, r.raw)
	require.Equal(t, "unauthorized", errField(r, "code"))
	assert.Equal(t, "expired", e.listKeys(admin)[id]["state"])

	// The expired admin key is not an admin key that remains: the only active one is protected.
	r = e.do("DELETE", "/v1/api-keys/"+adminKeyID(t, e, admin), admin, "", "")
	require.Equal(t, 409, r.status, r.raw)
}

func TestLastAdminKeyNeedsForce(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t, 0)
	org, admin := e.org("last-admin-org")
	adminID := adminKeyID(t, e, admin)
	memberID, member := e.createKey(admin, `{"name":"member","role":"member"}`)

	r := e.do("DELETE", "/v1/api-keys/"+adminID, admin, "", "")
	require.Equal(t, 409, r.status, r.raw)
	require.Equal(t, "last_admin_key", errField(r, "code"))
	require.Contains(t, errField(r, "message"), "force=true")
	for _, q := range []string{"?force=yes", "?force=1", "?force=TRUE", "?force=", "?force=true&force=true", "?force"} {
		r := e.do("DELETE", "/v1/api-keys/"+adminID+q, admin, "", "")
		require.Equal(t, 400, r.status, "%s: %s", q, r.raw)
		require.Equal(t, "force", errField(r, "field"), q)
	}
	r = e.do("DELETE", "/v1/api-keys/"+adminID+"?force=false", admin, "", "")
	require.Equal(t, 409, r.status, r.raw)
	require.Equal(t, 200, e.do("GET", "/v1/orgs/me", admin, "", "").status, "a refused revocation changed the key")
	require.Empty(t, keyAudits(t, org.ID, "api_key.revoke"))

	// Member keys are not protected; force is harmless where it is not needed.
	r = e.do("DELETE", "/v1/api-keys/"+memberID+"?force=true", admin, "", "")
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, 401, e.do("GET", "/v1/orgs/me", member, "", "").status)

	r = e.do("DELETE", "/v1/api-keys/"+adminID+"?force=true", admin, "", "")
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "revoked", r.body["state"])
	require.Equal(t, 401, e.do("GET", "/v1/api-keys", admin, "", "").status)
	rows := keyAudits(t, org.ID, "api_key.revoke")
	require.Len(t, rows, 2)
	meta := rows[0]["metadata"].(map[string]any)
	assert.Equal(t, true, meta["force"])
	assert.Equal(t, true, meta["last_admin_key"])
	assert.Equal(t, "admin", meta["role"])
}

// Two admins revoking each other's keys at once: exactly one wins, the org keeps an admin key.
func TestConcurrentAdminRevocationsKeepOneAdmin(t *testing.T) {
	t.Parallel()
	a := newKeyEnv(t, 0)
	b := newKeyEnv(t, 0)
	for round := range 10 {
		_, first := a.org("race-org")
		secondID, second := a.createKey(first, `{"name":"second admin","role":"admin"}`)
		firstID := adminKeyID(t, a, first)
		start := make(chan struct{})
		statuses := make([]int, 2)
		var wg sync.WaitGroup
		for i, call := range []struct {
			e         *env
			key, path string
		}{{a, first, "/v1/api-keys/" + secondID}, {b, second, "/v1/api-keys/" + firstID}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				statuses[i] = call.e.do("DELETE", call.path, call.key, "", "").status
			}()
		}
		close(start)
		wg.Wait()
		got := map[int]int{}
		for _, s := range statuses {
			got[s]++
		}
		// The loser either saw the winner's revocation (409) or, if its own key was revoked
		// before it authenticated, was refused (401); either way one admin key remains.
		require.Equal(t, 1, got[200], "round %d: %v", round, statuses)
		require.Equal(t, 1, got[409]+got[401], "round %d: %v", round, statuses)
		active := 0
		for _, k := range []string{first, second} {
			if a.do("GET", "/v1/orgs/me", k, "", "").status == 200 {
				active++
			}
		}
		require.Equal(t, 1, active, "round %d: active admin keys", round)
	}
}

func TestRevokeAnotherOrgsKeyIsNotFound(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t, 0)
	orgA, adminA := e.org("cross-a")
	_, adminB := e.org("cross-b")
	memberB, memberKeyB := e.createKey(adminB, `{"name":"b member","role":"member"}`)
	for _, q := range []string{"", "?force=true"} {
		r := e.do("DELETE", "/v1/api-keys/"+memberB+q, adminA, "", "")
		require.Equal(t, 404, r.status, r.raw)
		require.Equal(t, "not_found", errField(r, "code"))
		r = e.do("DELETE", "/v1/api-keys/"+adminKeyID(t, e, adminB)+q, adminA, "", "")
		require.Equal(t, 404, r.status, r.raw)
	}
	require.Equal(t, 200, e.do("GET", "/v1/orgs/me", memberKeyB, "", "").status)
	require.Equal(t, 200, e.do("GET", "/v1/orgs/me", adminB, "", "").status)
	require.Empty(t, keyAudits(t, orgA.ID, "api_key.revoke"))
	require.NotContains(t, e.listKeys(adminA), memberB)
}

func TestCreateAPIKeyExpiry(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t, 0)
	org, admin := e.org("expiry-org")
	before := countKeys(t, org.ID)
	future := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	cases := []struct{ body, field string }{
		{`{"name":"x","role":"member","expires_in":"soon"}`, "expires_in"},
		{`{"name":"x","role":"member","expires_in":"30d"}`, "expires_in"},
		{`{"name":"x","role":"member","expires_in":""}`, "expires_in"},
		{`{"name":"x","role":"member","expires_in":"-1h"}`, "expires_in"},
		{`{"name":"x","role":"member","expires_in":5}`, "expires_in"},
		{`{"name":"x","role":"member","expires_at":"tomorrow"}`, "expires_at"},
		{`{"name":"x","role":"member","expires_at":"2020-01-01T00:00:00Z"}`, "expires_at"},
		{`{"name":"x","role":"member","expires_at":true}`, "expires_at"},
		{`{"name":"x","role":"member","expires_in":"1h","expires_at":"` + future + `"}`, "expires_at"},
	}
	for _, c := range cases {
		r := e.do("POST", "/v1/api-keys", admin, "application/json", c.body)
		require.Equal(t, 400, r.status, "%s: %s", c.body, r.raw)
		require.Equal(t, c.field, errField(r, "field"), c.body)
		require.True(t, strings.HasPrefix(errField(r, "message"), c.field), r.raw)
	}
	require.Equal(t, before, countKeys(t, org.ID), "bad input wrote a key")

	r := e.do("POST", "/v1/api-keys", admin, "application/json", `{"name":"x","role":"member","expires_at":"`+future+`"}`)
	require.Equal(t, 201, r.status, r.raw)
	require.Equal(t, future, r.body["expires_at"])
	r = e.do("POST", "/v1/api-keys", admin, "application/json", `{"name":"y","role":"member","expires_in":null}`)
	require.Equal(t, 201, r.status, r.raw)
	require.Nil(t, r.body["expires_at"])
}

func TestCreateAPIKeyWithinOperatorMaximum(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t, 24*time.Hour)
	org, admin := e.org("max-ttl-org")
	before := countKeys(t, org.ID)
	for _, body := range []string{
		`{"name":"x","role":"member","expires_in":"25h"}`,
		`{"name":"x","role":"member","expires_at":"` + time.Now().Add(25*time.Hour).UTC().Format(time.RFC3339) + `"}`,
	} {
		r := e.do("POST", "/v1/api-keys", admin, "application/json", body)
		require.Equal(t, 400, r.status, r.raw)
		require.Contains(t, errField(r, "message"), "24h0m0s")
	}
	require.Equal(t, before, countKeys(t, org.ID))
	for _, body := range []string{`{"name":"default","role":"member"}`, `{"name":"day","role":"member","expires_in":"24h"}`} {
		r := e.do("POST", "/v1/api-keys", admin, "application/json", body)
		require.Equal(t, 201, r.status, r.raw)
		exp, err := time.Parse(time.RFC3339, r.body["expires_at"].(string))
		require.NoError(t, err)
		assert.WithinDuration(t, time.Now().Add(24*time.Hour), exp, time.Minute)
	}
	for id, k := range e.listKeys(admin) {
		assert.NotNil(t, k["expires_at"], "key %s never expires under a maximum", id)
	}
}
