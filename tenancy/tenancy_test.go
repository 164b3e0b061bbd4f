package tenancy_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/db/dbtest"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, &testDB)) }

func newService(t *testing.T) *tenancy.Service {
	t.Helper()
	d := testDB.Open(t)
	kr, err := seal.OpenLocalKeyring(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := seal.New(kr, tenancy.KeyStore{DB: d}, seal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &tenancy.Service{DB: d, Sealer: s}
}

var cli = audit.Actor{Type: audit.ActorCLI, ID: "test"}

func TestCreateOrgAndAuthenticate(t *testing.T) {
	ctx := context.Background()
	svc := newService(t)
	org, key, err := svc.CreateOrg(ctx, "  Acme  ", cli)
	if err != nil {
		t.Fatal(err)
	}
	if org.Name != "Acme" || key.Role != tenancy.RoleAdmin || len(key.Plaintext) < 40 {
		t.Fatalf("org %+v key role %s len %d", org, key.Role, len(key.Plaintext))
	}
	p, err := svc.Authenticate(ctx, key.Plaintext)
	if err != nil || p.OrgID != org.ID || p.Role != tenancy.RoleAdmin || p.KeyID != key.ID {
		t.Fatalf("authenticate: %+v %v", p, err)
	}
	for _, bad := range []string{"", "jck_", key.Plaintext + "x", "Bearer " + key.Plaintext, key.Plaintext[:len(key.Plaintext)-1]} {
		if _, err := svc.Authenticate(ctx, bad); !errors.Is(err, tenancy.ErrUnauthenticated) {
			t.Errorf("authenticate(%q): %v, want ErrUnauthenticated", bad, err)
		}
	}
	// The key is stored only as a hash.
	var stored int
	if err := testDB.Owner(t).QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE position($1::bytea in key_hash) > 0 OR prefix = $2`,
		[]byte(key.Plaintext), key.Plaintext).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("plaintext key found in api_keys: %d %v", stored, err)
	}
	// The org has a wrapped data key and an audit row.
	var keyID string
	if err := testDB.Owner(t).QueryRow(ctx, `SELECT k.key_id FROM organizations o JOIN org_data_keys k ON k.org_id = o.id AND k.version = o.data_key_version
		WHERE o.id = $1 AND k.version = 1 AND k.wrapped_key IS NOT NULL`, org.ID).Scan(&keyID); err != nil || keyID == "" {
		t.Fatalf("data key id: %q %v", keyID, err)
	}
	var audits int
	if err := testDB.Owner(t).QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'org.create'`, org.ID).Scan(&audits); err != nil || audits != 1 {
		t.Fatalf("org.create audit rows: %d %v", audits, err)
	}
}

func TestCreateOrgRejectsBadNames(t *testing.T) {
	svc := newService(t)
	for _, name := range []string{"", "   ", string(bytes.Repeat([]byte("x"), 201))} {
		if _, _, err := svc.CreateOrg(context.Background(), name, cli); err == nil {
			t.Errorf("CreateOrg(%q) succeeded", name)
		}
	}
}

func TestRoles(t *testing.T) {
	cases := []struct {
		have, need tenancy.Role
		ok         bool
	}{
		{tenancy.RoleAdmin, tenancy.RoleAdmin, true},
		{tenancy.RoleAdmin, tenancy.RoleAuditor, true},
		{tenancy.RoleMember, tenancy.RoleAdmin, false},
		{tenancy.RoleMember, tenancy.RoleMember, true},
		{tenancy.RoleAuditor, tenancy.RoleMember, false},
		{tenancy.RoleAuditor, tenancy.RoleAuditor, true},
		{tenancy.Role("root"), tenancy.RoleAuditor, false},
	}
	for _, c := range cases {
		if got := c.have.Allows(c.need); got != c.ok {
			t.Errorf("%s allows %s = %t, want %t", c.have, c.need, got, c.ok)
		}
	}
	if _, err := tenancy.ParseRole("owner"); err == nil {
		t.Error("ParseRole accepted an unknown role")
	}
}

// The Postgres key store converges racing EnsureOrgKey calls on one key, and values sealed by one
// sealer open with another (as across API and worker processes).
func TestKeyStoreRaceAndSealedBytes(t *testing.T) {
	ctx := context.Background()
	svc := newService(t)
	org, _, err := svc.CreateOrg(ctx, "race", cli)
	if err != nil {
		t.Fatal(err)
	}
	// A second org whose key is created only by racing sealers.
	orgID := uuid.New()
	err = svc.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		_, err := q.CreateOrganization(ctx, dbq.CreateOrganizationParams{ID: orgID, Name: "raced"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := seal.OpenLocalKeyring(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	sealers := make([]*seal.Sealer, 8)
	for i := range sealers {
		sealers[i], err = seal.New(kr, tenancy.KeyStore{DB: svc.DB}, seal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(s *seal.Sealer) {
			defer wg.Done()
			if err := s.EnsureOrgKey(ctx, orgID); err != nil {
				t.Error(err)
			}
		}(sealers[i])
	}
	wg.Wait()
	secret := []byte("atlassian-api-token-ATATT3xFfGF0-very-secret")
	b := seal.Binding{OrgID: orgID, ConnectionID: uuid.New(), Purpose: seal.PurposeAPIToken}
	sealed, err := sealers[0].Seal(ctx, b, secret)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range sealers {
		got, err := s.Open(ctx, b, sealed)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("sealer %d cannot open: %v", i, err)
		}
	}
	// Store the sealed blob where credentials live and check the raw bytes in Postgres.
	_, err = testDB.Owner(t).Exec(ctx, `INSERT INTO connections (org_id, kind, site_url, workflow_id, sealed_credentials) VALUES ($1, 'cloud_token', 'https://x.atlassian.net', 'wf', $2)`, org.ID, sealed)
	if err != nil {
		t.Fatal(err)
	}
	var hits int
	err = testDB.Owner(t).QueryRow(ctx, `SELECT count(*) FROM connections WHERE position($1::bytea in sealed_credentials) > 0`, secret).Scan(&hits)
	if err != nil || hits != 0 {
		t.Fatalf("plaintext found in sealed_credentials: %d %v", hits, err)
	}
	// Wrong org binding fails.
	if _, err := sealers[1].Open(ctx, seal.Binding{OrgID: org.ID, ConnectionID: b.ConnectionID, Purpose: b.Purpose}, sealed); err == nil {
		t.Fatal("opened with another org's binding")
	}
}
