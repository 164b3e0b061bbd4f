// Package tenancy owns organizations and their API keys: creating an org (with its data key and
// first admin key), authenticating bearer keys, and role checks. It also adapts the organizations
// table to seal.KeyStore.
package tenancy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/seal"
)

// Role is an API key's role.
type Role string

// Roles, from most to least privileged.
const (
	RoleAdmin   Role = "admin"   // everything, including managing connections and keys
	RoleMember  Role = "member"  // day-to-day writes: findings, sync now, assessments
	RoleAuditor Role = "auditor" // read-only
)

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleMember, RoleAuditor:
		return r, nil
	}
	return "", fmt.Errorf("role %q: must be admin, member or auditor", s)
}

// Allows reports whether r may do what needs requires.
func (r Role) Allows(needs Role) bool { return rank(r) >= rank(needs) }

func rank(r Role) int {
	switch r {
	case RoleAdmin:
		return 3
	case RoleMember:
		return 2
	case RoleAuditor:
		return 1
	}
	return 0
}

// keyPrefix marks jiraconnect keys so secret scanners can find leaked ones.
const keyPrefix = "jck_"

// APIKey is a freshly minted key. Plaintext is shown once and never stored.
type APIKey struct {
	ID        uuid.UUID
	Plaintext string
	Prefix    string
	Role      Role
}

// String never reveals the key.
func (k APIKey) String() string { return "APIKey(" + k.Prefix + "…)" }

// newKeyMaterial returns a 256-bit random key, its display prefix and its hash.
func newKeyMaterial() (plaintext, prefix string, hash []byte, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", nil, fmt.Errorf("generate api key: %w", err)
	}
	plaintext = keyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return plaintext, plaintext[:len(keyPrefix)+6], HashKey(plaintext), nil
}

// HashKey is the stored form of an API key. The key has 256 bits of entropy, so a single SHA-256
// is enough; a slow password hash would only add latency to every request.
func HashKey(plaintext string) []byte {
	h := sha256.Sum256([]byte(plaintext))
	return h[:]
}

// Org is an organization as returned to callers.
type Org struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Service implements organization and key management.
type Service struct {
	DB     *db.DB
	Sealer *seal.Sealer
}

// ValidateOrgName checks an organization name.
func ValidateOrgName(name string) error {
	name = strings.TrimSpace(name)
	if name == "" {
		return errors.New("name: must not be empty")
	}
	if len(name) > 200 {
		return errors.New("name: must be at most 200 bytes")
	}
	return nil
}

// CreateOrg creates an organization, generates its KMS data key and mints its first admin key.
// The org row, key row and audit row commit together; the data key is created right after (it is
// idempotent and can be retried by EnsureOrgKey if that step fails).
func (s *Service) CreateOrg(ctx context.Context, name string, actor audit.Actor) (Org, APIKey, error) {
	if err := ValidateOrgName(name); err != nil {
		return Org{}, APIKey{}, err
	}
	name = strings.TrimSpace(name)
	orgID := uuid.New()
	var org Org
	var key APIKey
	err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.CreateOrganization(ctx, dbq.CreateOrganizationParams{ID: orgID, Name: name})
		if err != nil {
			return fmt.Errorf("insert organization: %w", err)
		}
		org = Org{ID: row.ID, Name: row.Name, CreatedAt: row.CreatedAt.UTC()}
		key, err = createKey(ctx, q, orgID, "initial admin key", RoleAdmin)
		if err != nil {
			return err
		}
		_, err = audit.Record(ctx, q, audit.Entry{OrgID: orgID, Actor: actor, Action: "org.create",
			TargetType: "organization", TargetID: orgID.String(), Metadata: map[string]any{"name": name, "admin_key_prefix": key.Prefix}})
		return err
	})
	if err != nil {
		return Org{}, APIKey{}, fmt.Errorf("create organization %q: %w", name, err)
	}
	if err := s.Sealer.EnsureOrgKey(ctx, orgID); err != nil {
		return Org{}, APIKey{}, fmt.Errorf("create data key for organization %s: %w", orgID, err)
	}
	return org, key, nil
}

// CreateKey mints another API key for orgID and audits it.
func (s *Service) CreateKey(ctx context.Context, orgID uuid.UUID, name string, role Role, actor audit.Actor) (APIKey, error) {
	var key APIKey
	err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		var err error
		if key, err = createKey(ctx, q, orgID, name, role); err != nil {
			return err
		}
		_, err = audit.Record(ctx, q, audit.Entry{OrgID: orgID, Actor: actor, Action: "api_key.create",
			TargetType: "api_key", TargetID: key.ID.String(), Metadata: map[string]any{"role": string(role), "prefix": key.Prefix}})
		return err
	})
	return key, err
}

func createKey(ctx context.Context, q *dbq.Queries, orgID uuid.UUID, name string, role Role) (APIKey, error) {
	plaintext, prefix, hash, err := newKeyMaterial()
	if err != nil {
		return APIKey{}, err
	}
	row, err := q.CreateAPIKey(ctx, dbq.CreateAPIKeyParams{OrgID: orgID, Name: name, Role: string(role), Prefix: prefix, KeyHash: hash})
	if err != nil {
		return APIKey{}, fmt.Errorf("insert api key: %w", err)
	}
	return APIKey{ID: row.ID, Plaintext: plaintext, Prefix: prefix, Role: role}, nil
}

// Principal is an authenticated caller.
type Principal struct {
	OrgID uuid.UUID
	KeyID uuid.UUID
	Role  Role
}

// ErrUnauthenticated means the key is missing, malformed, unknown or revoked. Callers must not
// tell these apart in responses.
var ErrUnauthenticated = errors.New("invalid or missing API key")

// Authenticate resolves a bearer key.
func (s *Service) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	if !strings.HasPrefix(bearer, keyPrefix) || len(bearer) > 128 {
		return Principal{}, ErrUnauthenticated
	}
	row, err := s.DB.System().AuthenticateAPIKey(ctx, HashKey(bearer))
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate api key: %w", err)
	}
	role, err := ParseRole(row.Role)
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate api key: stored %w", err)
	}
	return Principal{OrgID: row.OrgID, KeyID: row.KeyID, Role: role}, nil
}

// GetOrg returns the caller's organization.
func (s *Service) GetOrg(ctx context.Context, orgID uuid.UUID) (Org, error) {
	var org Org
	err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.GetOrganization(ctx, orgID)
		if err != nil {
			return err
		}
		org = Org{ID: row.ID, Name: row.Name, CreatedAt: row.CreatedAt.UTC()}
		return nil
	})
	if err != nil {
		return Org{}, fmt.Errorf("get organization %s: %w", orgID, err)
	}
	return org, nil
}

// KeyStore stores org data keys on the organizations row; it implements seal.KeyStore.
type KeyStore struct{ DB *db.DB }

var _ seal.KeyStore = KeyStore{}

// LoadOrgKey implements seal.KeyStore.
func (k KeyStore) LoadOrgKey(ctx context.Context, orgID uuid.UUID) (seal.OrgKey, error) {
	var out seal.OrgKey
	err := k.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.GetOrgDataKey(ctx, orgID)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("organization %s: %w", orgID, seal.ErrNoOrgKey)
		}
		if err != nil {
			return err
		}
		if row.WrappedDataKey == nil || row.DataKeyID == nil {
			return seal.ErrNoOrgKey
		}
		out = seal.OrgKey{Wrapped: row.WrappedDataKey, KeyID: *row.DataKeyID, Version: row.DataKeyVersion}
		return nil
	})
	if err != nil {
		return seal.OrgKey{}, fmt.Errorf("load data key of organization %s: %w", orgID, err)
	}
	return out, nil
}

// SaveOrgKey implements seal.KeyStore with insert-if-absent semantics.
func (k KeyStore) SaveOrgKey(ctx context.Context, orgID uuid.UUID, key seal.OrgKey) (seal.OrgKey, error) {
	var out seal.OrgKey
	err := k.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.SetOrgDataKeyIfAbsent(ctx, dbq.SetOrgDataKeyIfAbsentParams{
			ID: orgID, Wrapped: key.Wrapped, KeyID: key.KeyID, Version: key.Version})
		if err != nil {
			return err
		}
		if row.WrappedDataKey == nil || row.DataKeyID == nil {
			return errors.New("data key was not stored")
		}
		out = seal.OrgKey{Wrapped: row.WrappedDataKey, KeyID: *row.DataKeyID, Version: row.DataKeyVersion}
		return nil
	})
	if err != nil {
		return seal.OrgKey{}, fmt.Errorf("save data key of organization %s: %w", orgID, err)
	}
	return out, nil
}
