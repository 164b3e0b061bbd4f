package tenancy_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

func str(s string) *string { return &s }

var apiCaller = audit.Caller{Actor: audit.Actor{Type: audit.ActorAPIKey, ID: "caller-key"}}

// insertKey stores a key directly as the owner, with creation and expiry times a caller could
// not choose (a key that expired an hour ago), and returns its plaintext.
func insertKey(t *testing.T, orgID uuid.UUID, role tenancy.Role, createdAt time.Time, expiresAt *time.Time) (uuid.UUID, string) {
	t.Helper()
	var b [32]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	plaintext := "jck_" + base64.RawURLEncoding.EncodeToString(b[:])
	var id uuid.UUID
	err = testDB.Owner(t).QueryRow(context.Background(),
		`INSERT INTO api_keys (org_id, name, role, prefix, key_hash, created_at, expires_at, created_by_type, created_by_id)
		 VALUES ($1, 'inserted', $2, $3, $4, $5, $6, 'cli', 'test') RETURNING id`,
		orgID, string(role), plaintext[:10], tenancy.HashKey(plaintext), createdAt, expiresAt).Scan(&id)
	require.NoError(t, err)
	return id, plaintext
}

type auditRow struct {
	ActorType, ActorID, TargetID string
	Metadata                     map[string]any
}

func auditRows(t *testing.T, orgID uuid.UUID, action string) []auditRow {
	t.Helper()
	rows, err := testDB.Owner(t).Query(context.Background(),
		`SELECT actor_type, actor_id, target_id, coalesce(metadata, '{}'::jsonb) FROM audit_log WHERE org_id = $1 AND action = $2 ORDER BY id`, orgID, action)
	require.NoError(t, err)
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		var raw []byte
		require.NoError(t, rows.Scan(&r.ActorType, &r.ActorID, &r.TargetID, &raw))
		require.NoError(t, json.Unmarshal(raw, &r.Metadata))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

func findKey(t *testing.T, keys []tenancy.KeyInfo, id uuid.UUID) tenancy.KeyInfo {
	t.Helper()
	for _, k := range keys {
		if k.ID == id {
			return k
		}
	}
	t.Fatalf("key %s not listed", id)
	return tenancy.KeyInfo{}
}

func TestKeyCreateListRevoke(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	org, admin, err := svc.CreateOrg(ctx, "lifecycle", cli)
	require.NoError(t, err)
	require.Nil(t, admin.ExpiresAt, "without API_KEY_MAX_TTL the first admin key does not expire")

	before := time.Now()
	member, err := svc.CreateKey(ctx, org.ID, tenancy.KeyRequest{Name: " ci ", Role: "member", ExpiresIn: str("720h")}, apiCaller)
	require.NoError(t, err)
	require.Equal(t, "ci", member.Name)
	require.NotNil(t, member.ExpiresAt)
	assert.WithinRange(t, *member.ExpiresAt, before.Add(720*time.Hour-time.Second), time.Now().Add(720*time.Hour))
	p, err := svc.Authenticate(ctx, member.Plaintext)
	require.NoError(t, err)
	require.Equal(t, member.ID, p.KeyID)

	keys, err := svc.ListKeys(ctx, org.ID)
	require.NoError(t, err)
	require.Len(t, keys, 2)
	got := findKey(t, keys, member.ID)
	assert.Equal(t, tenancy.KeyActive, got.State)
	assert.Equal(t, &tenancy.KeyActor{Type: "api_key", ID: "caller-key"}, got.CreatedBy)
	assert.Equal(t, member.ExpiresAt.UTC(), got.ExpiresAt.UTC())
	assert.NotNil(t, got.LastUsedAt, "authentication records the last use")
	assert.Nil(t, got.RevokedAt)
	assert.Equal(t, &tenancy.KeyActor{Type: "cli", ID: "test"}, findKey(t, keys, admin.ID).CreatedBy)

	info, changed, err := svc.RevokeKey(ctx, org.ID, member.ID, false, apiCaller)
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, tenancy.KeyRevoked, info.State)
	require.NotNil(t, info.RevokedAt)
	require.Equal(t, &tenancy.KeyActor{Type: "api_key", ID: "caller-key"}, info.RevokedBy)
	_, err = svc.Authenticate(ctx, member.Plaintext)
	require.ErrorIs(t, err, tenancy.ErrUnauthenticated, "a revoked key authenticates no more")

	// Revoking again changes nothing and writes no second audit row.
	again, changed, err := svc.RevokeKey(ctx, org.ID, member.ID, false, audit.Caller{Actor: audit.Actor{Type: audit.ActorCLI, ID: "other"}})
	require.NoError(t, err)
	require.False(t, changed)
	require.True(t, info.RevokedAt.Equal(*again.RevokedAt))
	require.Equal(t, info.RevokedBy, again.RevokedBy)

	created := auditRows(t, org.ID, "api_key.create")
	require.Len(t, created, 1)
	assert.Equal(t, member.ID.String(), created[0].TargetID)
	assert.Equal(t, "ci", created[0].Metadata["name"])
	revoked := auditRows(t, org.ID, "api_key.revoke")
	require.Len(t, revoked, 1)
	assert.Equal(t, auditRow{ActorType: "api_key", ActorID: "caller-key", TargetID: member.ID.String(), Metadata: map[string]any{
		"name": "ci", "role": "member", "prefix": member.Prefix, "state_before": "active", "force": false, "last_admin_key": false,
	}}, revoked[0])
	var leaks int
	require.NoError(t, testDB.Owner(t).QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE org_id = $1 AND metadata::text LIKE '%' || $2 || '%'`,
		org.ID, member.Plaintext[len(member.Prefix):]).Scan(&leaks))
	require.Zero(t, leaks, "the audit log holds a key's secret")
}

func TestExpiredKeysDoNotAuthenticate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	org, _, err := svc.CreateOrg(ctx, "expiry", cli)
	require.NoError(t, err)
	now := time.Now()
	past := now.Add(-time.Millisecond)
	expiredID, expired := insertKey(t, org.ID, tenancy.RoleMember, now.Add(-time.Hour), &past)
	future := now.Add(time.Hour)
	_, valid := insertKey(t, org.ID, tenancy.RoleMember, now.Add(-time.Hour), &future)

	_, err = svc.Authenticate(ctx, expired)
	require.ErrorIs(t, err, tenancy.ErrUnauthenticated)
	p, err := svc.Authenticate(ctx, valid)
	require.NoError(t, err)
	require.Equal(t, tenancy.RoleMember, p.Role)

	keys, err := svc.ListKeys(ctx, org.ID)
	require.NoError(t, err)
	got := findKey(t, keys, expiredID)
	assert.Equal(t, tenancy.KeyExpired, got.State)
	assert.Nil(t, got.LastUsedAt, "a refused key is not marked as used")

	// An expired key can still be revoked, for the record.
	info, changed, err := svc.RevokeKey(ctx, org.ID, expiredID, false, apiCaller)
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, tenancy.KeyRevoked, info.State)
	require.Equal(t, "expired", auditRows(t, org.ID, "api_key.revoke")[0].Metadata["state_before"])
}

func TestLastActiveAdminKeyNeedsForce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	org, first, err := svc.CreateOrg(ctx, "last-admin", cli)
	require.NoError(t, err)

	// An expired admin key and a member key do not count as admin keys that remain.
	past := time.Now().Add(-time.Minute)
	insertKey(t, org.ID, tenancy.RoleAdmin, time.Now().Add(-time.Hour), &past)
	member, err := svc.CreateKey(ctx, org.ID, tenancy.KeyRequest{Name: "member", Role: "member"}, apiCaller)
	require.NoError(t, err)
	_, _, err = svc.RevokeKey(ctx, org.ID, first.ID, false, apiCaller)
	require.ErrorIs(t, err, tenancy.ErrLastAdminKey)
	_, err = svc.Authenticate(ctx, first.Plaintext)
	require.NoError(t, err, "a refused revocation changed the key")
	require.Empty(t, auditRows(t, org.ID, "api_key.revoke"))

	// Member keys are never protected.
	_, changed, err := svc.RevokeKey(ctx, org.ID, member.ID, false, apiCaller)
	require.NoError(t, err)
	require.True(t, changed)

	// With a second admin key the first may go; then the second is the last one.
	second, err := svc.CreateKey(ctx, org.ID, tenancy.KeyRequest{Name: "second admin", Role: "admin"}, apiCaller)
	require.NoError(t, err)
	_, _, err = svc.RevokeKey(ctx, org.ID, first.ID, false, apiCaller)
	require.NoError(t, err)
	_, _, err = svc.RevokeKey(ctx, org.ID, second.ID, false, apiCaller)
	require.ErrorIs(t, err, tenancy.ErrLastAdminKey)

	info, changed, err := svc.RevokeKey(ctx, org.ID, second.ID, true, apiCaller)
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, tenancy.KeyRevoked, info.State)
	_, err = svc.Authenticate(ctx, second.Plaintext)
	require.ErrorIs(t, err, tenancy.ErrUnauthenticated)
	rows := auditRows(t, org.ID, "api_key.revoke")
	require.Len(t, rows, 3)
	assert.Equal(t, true, rows[2].Metadata["force"])
	assert.Equal(t, true, rows[2].Metadata["last_admin_key"])
	assert.Equal(t, false, rows[1].Metadata["last_admin_key"])
}

// Two admins revoking each other's keys at the same moment must not both succeed: the org would be
// left without an admin key. Revocations serialize on the organization row.
func TestConcurrentRevocationsLeaveAnAdminKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	for round := range 15 {
		org, a, err := svc.CreateOrg(ctx, "race", cli)
		require.NoError(t, err)
		b, err := svc.CreateKey(ctx, org.ID, tenancy.KeyRequest{Name: "b", Role: "admin"}, apiCaller)
		require.NoError(t, err)
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, target := range []uuid.UUID{a.ID, b.ID} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, _, errs[i] = svc.RevokeKey(ctx, org.ID, target, false, apiCaller)
			}()
		}
		close(start)
		wg.Wait()
		ok, refused := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, tenancy.ErrLastAdminKey):
				refused++
			default:
				t.Fatalf("round %d: %v", round, err)
			}
		}
		require.Equal(t, [2]int{1, 1}, [2]int{ok, refused}, "round %d: revocations succeeded and refused", round)
		keys, err := svc.ListKeys(ctx, org.ID)
		require.NoError(t, err)
		active := 0
		for _, k := range keys {
			if k.State == tenancy.KeyActive {
				active++
			}
		}
		require.Equal(t, 1, active, "round %d", round)
	}
}

func TestKeysAreScopedToTheirOrganization(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	orgA, _, err := svc.CreateOrg(ctx, "scope a", cli)
	require.NoError(t, err)
	orgB, keyB, err := svc.CreateOrg(ctx, "scope b", cli)
	require.NoError(t, err)
	_, _, err = svc.RevokeKey(ctx, orgA.ID, keyB.ID, true, apiCaller)
	require.ErrorIs(t, err, tenancy.ErrKeyNotFound)
	_, err = svc.Authenticate(ctx, keyB.Plaintext)
	require.NoError(t, err)
	keys, err := svc.ListKeys(ctx, orgA.ID)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.NotEqual(t, keyB.ID, keys[0].ID)
	require.Empty(t, auditRows(t, orgA.ID, "api_key.revoke"))
	require.Empty(t, auditRows(t, orgB.ID, "api_key.revoke"))

	unknown := uuid.New()
	_, err = svc.ListKeys(ctx, unknown)
	require.ErrorIs(t, err, tenancy.ErrOrgNotFound)
	_, err = svc.CreateKey(ctx, unknown, tenancy.KeyRequest{Name: "x", Role: "admin"}, apiCaller)
	require.ErrorIs(t, err, tenancy.ErrOrgNotFound)
	_, _, err = svc.RevokeKey(ctx, unknown, keyB.ID, true, apiCaller)
	require.ErrorIs(t, err, tenancy.ErrOrgNotFound)
}

func TestMaxKeyTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	svc.MaxKeyTTL = 24 * time.Hour
	before := time.Now()
	org, first, err := svc.CreateOrg(ctx, "max ttl", cli)
	require.NoError(t, err)
	require.NotNil(t, first.ExpiresAt, "the first admin key gets the maximum lifetime")
	assert.WithinRange(t, *first.ExpiresAt, before.Add(24*time.Hour-time.Second), time.Now().Add(24*time.Hour))

	k, err := svc.CreateKey(ctx, org.ID, tenancy.KeyRequest{Name: "default", Role: "auditor"}, apiCaller)
	require.NoError(t, err)
	require.NotNil(t, k.ExpiresAt)
	assert.WithinRange(t, *k.ExpiresAt, before.Add(24*time.Hour-time.Second), time.Now().Add(24*time.Hour))

	_, err = svc.CreateKey(ctx, org.ID, tenancy.KeyRequest{Name: "long", Role: "auditor", ExpiresIn: str("25h")}, apiCaller)
	var fe *tenancy.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "expires_in", fe.Field)
	keys, err := svc.ListKeys(ctx, org.ID)
	require.NoError(t, err)
	require.Len(t, keys, 2, "a refused key was written")
}

// The database itself keeps revocation final and a key's identity fixed, whoever writes.
func TestRevocationIsFinalInTheDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	org, admin, err := svc.CreateOrg(ctx, "final", cli)
	require.NoError(t, err)
	member, err := svc.CreateKey(ctx, org.ID, tenancy.KeyRequest{Name: "m", Role: "member"}, apiCaller)
	require.NoError(t, err)
	_, _, err = svc.RevokeKey(ctx, org.ID, member.ID, false, apiCaller)
	require.NoError(t, err)

	owner := testDB.Owner(t)
	for _, stmt := range []string{
		`UPDATE api_keys SET revoked_at = NULL, revoked_by_type = NULL, revoked_by_id = NULL WHERE id = $1`,
		`UPDATE api_keys SET revoked_at = now() WHERE id = $1`,
		`UPDATE api_keys SET name = 'renamed' WHERE id = $1`,
	} {
		_, err := owner.Exec(ctx, stmt, member.ID)
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr, stmt)
		require.Equal(t, "42501", pgErr.Code, stmt)
	}
	for _, stmt := range []string{
		`UPDATE api_keys SET role = 'member' WHERE id = $1`,
		`UPDATE api_keys SET expires_at = now() + interval '1 hour' WHERE id = $1`,
		`UPDATE api_keys SET key_hash = '\x00' WHERE id = $1`,
		`UPDATE api_keys SET created_by_id = 'someone else' WHERE id = $1`,
	} {
		_, err := owner.Exec(ctx, stmt, admin.ID)
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr, stmt)
		require.Equal(t, "42501", pgErr.Code, stmt)
	}
	// The application role may only write the revocation columns.
	err = pgx.BeginFunc(ctx, svc.DB.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, org.ID.String()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE api_keys SET last_used_at = now() WHERE id = $1`, admin.ID)
		return err
	})
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "42501", pgErr.Code)
	_, err = svc.Authenticate(ctx, admin.Plaintext)
	require.NoError(t, err)
}

func TestParseKeyRequest(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)
	at := func(d time.Duration) *time.Time { v := now.Add(d).Truncate(time.Microsecond); return &v }
	ok := []struct {
		name string
		req  tenancy.KeyRequest
		max  time.Duration
		want *time.Time
	}{
		{"no expiry", tenancy.KeyRequest{}, 0, nil},
		{"expires_in", tenancy.KeyRequest{ExpiresIn: str("90m")}, 0, at(90 * time.Minute)},
		{"expires_at", tenancy.KeyRequest{ExpiresAt: str("2030-02-01T00:00:00+01:00")}, 0, ptr(time.Date(2030, 1, 31, 23, 0, 0, 0, time.UTC))},
		{"default maximum", tenancy.KeyRequest{}, 48 * time.Hour, at(48 * time.Hour)},
		{"within maximum", tenancy.KeyRequest{ExpiresIn: str("48h")}, 48 * time.Hour, at(48 * time.Hour)},
	}
	for _, c := range ok {
		c.req.Name, c.req.Role = " key ", "auditor"
		name, role, exp, err := tenancy.ParseKeyRequest(now, c.req, c.max)
		require.NoError(t, err, c.name)
		assert.Equal(t, "key", name, c.name)
		assert.Equal(t, tenancy.RoleAuditor, role, c.name)
		assert.Equal(t, c.want, exp, c.name)
	}
	bad := []struct {
		req   tenancy.KeyRequest
		max   time.Duration
		field string
	}{
		{tenancy.KeyRequest{Name: "", Role: "admin"}, 0, "name"},
		{tenancy.KeyRequest{Name: strings.Repeat("x", 201), Role: "admin"}, 0, "name"},
		{tenancy.KeyRequest{Name: "a\x00b", Role: "admin"}, 0, "name"},
		{tenancy.KeyRequest{Name: "a\nb", Role: "admin"}, 0, "name"},
		{tenancy.KeyRequest{Name: "a\xffb", Role: "admin"}, 0, "name"},
		{tenancy.KeyRequest{Name: "k", Role: "owner"}, 0, "role"},
		{tenancy.KeyRequest{Name: "k", Role: "admin", ExpiresIn: str("")}, 0, "expires_in"},
		{tenancy.KeyRequest{Name: "k", Role: "admin", ExpiresIn: str("soon")}, 0, "expires_in"},
		{tenancy.KeyRequest{Name: "k", Role: "admin", ExpiresIn: str("30d")}, 0, "expires_in"},
		{tenancy.KeyRequest{Name: "k", Role: "admin", ExpiresIn: str("-1h")}, 0, "expires_in"},
		{tenancy.KeyRequest{Name: "k", Role: "admin", ExpiresIn: str("0")}, 0, "expires_in"},
		{tenancy.KeyRequest{Name: "k", Role: "admin", ExpiresIn: str("49h")}, 48 * time.Hour, "expires_in"},
		{tenancy.KeyRequest{Name: "k", Role: "admin", ExpiresAt: str("2030-01-02")}, 0, "expires_at"},
		{tenancy.KeyRequest{Name: "k", Role: "admin", ExpiresAt: str("2030-01-02T03:04:05Z")}, 0, "expires_at"},
		{tenancy.KeyRequest{Name: "k", Role: "admin", ExpiresAt: str("2031-01-02T03:04:05Z")}, 48 * time.Hour, "expires_at"},
		{tenancy.KeyRequest{Name: "k", Role: "admin", ExpiresIn: str("1h"), ExpiresAt: str("2031-01-02T03:04:05Z")}, 0, "expires_at"},
	}
	for _, c := range bad {
		_, _, _, err := tenancy.ParseKeyRequest(now, c.req, c.max)
		var fe *tenancy.FieldError
		require.ErrorAs(t, err, &fe, "%+v", c.req)
		assert.Equal(t, c.field, fe.Field, "%+v", c.req)
		assert.True(t, strings.HasPrefix(fe.Error(), c.field+": "), fe.Error())
	}
}

func ptr[T any](v T) *T { return &v }

// FuzzParseKeyRequest: any input either yields a valid key request (a trimmed, printable name, an
// expiry in the future and within the maximum) or a field error naming a request field.
func FuzzParseKeyRequest(f *testing.F) {
	f.Add("key", "admin", "720h", true, "", false, int64(0))
	f.Add(" k ", "member", "", false, "2031-01-02T03:04:05Z", true, int64(time.Hour))
	f.Add("k", "auditor", "1h", true, "2031-01-02T03:04:05Z", true, int64(0))
	f.Add("k\x00", "admin", "-5m", true, "", false, int64(48*time.Hour))
	f.Add("k", "admin", "", false, "", false, int64(24*time.Hour))
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, name, role, in string, hasIn bool, at string, hasAt bool, maxTTL int64) {
		req := tenancy.KeyRequest{Name: name, Role: role}
		if hasIn {
			req.ExpiresIn = &in
		}
		if hasAt {
			req.ExpiresAt = &at
		}
		limit := time.Duration(maxTTL)
		if limit < 0 {
			limit = 0
		}
		gotName, gotRole, exp, err := tenancy.ParseKeyRequest(now, req, limit)
		if err != nil {
			var fe *tenancy.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a field error", err)
			}
			switch fe.Field {
			case "name", "role", "expires_in", "expires_at":
			default:
				t.Fatalf("error names unknown field %q", fe.Field)
			}
			return
		}
		if gotName == "" || gotName != strings.TrimSpace(gotName) || len(gotName) > 200 || strings.ContainsAny(gotName, "\x00\n\r\t") {
			t.Fatalf("accepted name %q", gotName)
		}
		if _, err := tenancy.ParseRole(string(gotRole)); err != nil {
			t.Fatalf("accepted role %q", gotRole)
		}
		if exp == nil {
			if hasIn || hasAt || limit > 0 {
				t.Fatalf("no expiry for %+v with maximum %s", req, limit)
			}
			return
		}
		if !exp.After(now) {
			t.Fatalf("expiry %s is not in the future", exp)
		}
		if limit > 0 && exp.After(now.Add(max(limit, tenancy.MinKeyTTL))) {
			t.Fatalf("expiry %s beyond the maximum %s", exp, limit)
		}
	})
}
