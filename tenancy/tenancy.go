// Package tenancy owns organizations and their API keys: creating an org (with its data key and
// first admin key), the key lifecycle (minting with an optional expiry bounded by the operator's
// maximum, listing, revocation), authenticating bearer keys, and role checks. The API and the CLI
// both go through it, so a key is validated and audited the same way whoever asks. It also adapts
// the organizations table to seal.KeyStore.
package tenancy

import (
	"context"
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
	// MaxKeyTTL is the longest lifetime of an API key (API_KEY_MAX_TTL); a key asked for without
	// an expiry gets it. Zero allows keys that never expire.
	MaxKeyTTL time.Duration
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

// CreateOrg creates an organization, generates its KMS data key and mints its first admin key
// (which expires after MaxKeyTTL when that is set). The org row, key row and audit row commit
// together; the data key is created right after (it is idempotent and can be retried by
// EnsureOrgKey if that step fails).
func (s *Service) CreateOrg(ctx context.Context, name string, actor audit.Actor) (Org, APIKey, error) {
	if err := ValidateOrgName(name); err != nil {
		return Org{}, APIKey{}, err
	}
	name = strings.TrimSpace(name)
	expiresAt, err := resolveExpiry(time.Now(), nil, nil, s.MaxKeyTTL)
	if err != nil {
		return Org{}, APIKey{}, err
	}
	orgID := uuid.New()
	var org Org
	var key APIKey
	err = s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.CreateOrganization(ctx, dbq.CreateOrganizationParams{ID: orgID, Name: name})
		if err != nil {
			return fmt.Errorf("insert organization: %w", err)
		}
		org = Org{ID: row.ID, Name: row.Name, CreatedAt: row.CreatedAt.UTC()}
		key, err = insertKey(ctx, q, orgID, "initial admin key", RoleAdmin, expiresAt, actor)
		if err != nil {
			return err
		}
		_, err = audit.Record(ctx, q, audit.Entry{OrgID: orgID, Actor: actor, Action: "org.create",
			TargetType: "organization", TargetID: orgID.String(), Metadata: map[string]any{"name": name, "admin_key_prefix": key.Prefix, "admin_key_id": key.ID.String()}})
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

// Principal is an authenticated caller.
type Principal struct {
	OrgID uuid.UUID
	KeyID uuid.UUID
	Role  Role
}

// ErrUnauthenticated means the key is missing, malformed, unknown, revoked or expired. Callers
// must not tell these apart in responses.
var ErrUnauthenticated = errors.New("invalid or missing API key")

// Authenticate resolves a bearer key to an active key's principal. Every call asks the database,
// which refuses revoked and expired keys; nothing is cached, so a revocation or an expiry applies
// to the next request on every process.
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

// KeyStore stores org data keys in org_data_keys, one row per version, with the current version
// on the organizations row; it implements seal.KeyStore. Rotation, re-wrapping and retirement of
// versions are Service use cases (keys_rotation.go), audited in the same transactions.
type KeyStore struct{ DB *db.DB }

var _ seal.KeyStore = KeyStore{}

// LoadOrgKey implements seal.KeyStore.
func (k KeyStore) LoadOrgKey(ctx context.Context, orgID uuid.UUID) (seal.OrgKey, error) {
	var out seal.OrgKey
	err := k.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.GetCurrentOrgDataKey(ctx, orgID)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("organization %s: %w", orgID, seal.ErrNoOrgKey)
		}
		if err != nil {
			return err
		}
		out = seal.OrgKey{Wrapped: row.WrappedKey, KeyID: row.KeyID, Version: row.Version}
		return nil
	})
	if err != nil {
		return seal.OrgKey{}, fmt.Errorf("load data key of organization %s: %w", orgID, err)
	}
	return out, nil
}

// LoadOrgKeyVersion implements seal.KeyStore.
func (k KeyStore) LoadOrgKeyVersion(ctx context.Context, orgID uuid.UUID, version int32) (seal.OrgKey, error) {
	var out seal.OrgKey
	err := k.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.GetOrgDataKeyVersion(ctx, dbq.GetOrgDataKeyVersionParams{OrgID: orgID, Version: version})
		if errors.Is(err, pgx.ErrNoRows) {
			org, err := q.GetOrganization(ctx, orgID)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				return seal.ErrNoOrgKey
			case err != nil:
				return err
			case org.DataKeyVersion == nil:
				return seal.ErrNoOrgKey
			}
			return seal.ErrNoKeyVersion
		}
		if err != nil {
			return err
		}
		if row.RetiredAt != nil || row.WrappedKey == nil {
			return seal.ErrKeyVersionRetired
		}
		out = seal.OrgKey{Wrapped: row.WrappedKey, KeyID: row.KeyID, Version: row.Version}
		return nil
	})
	if err != nil {
		return seal.OrgKey{}, fmt.Errorf("load data key version %d of organization %s: %w", version, orgID, err)
	}
	return out, nil
}

// SaveOrgKey implements seal.KeyStore with insert-if-absent semantics: under the organization's
// key lock, the key becomes version 1 only if the organization has no current version yet.
func (k KeyStore) SaveOrgKey(ctx context.Context, orgID uuid.UUID, key seal.OrgKey) (seal.OrgKey, error) {
	var out seal.OrgKey
	err := k.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		current, err := q.LockOrgKeyPointer(ctx, orgID)
		if errors.Is(err, pgx.ErrNoRows) {
			return errors.New("no such organization")
		}
		if err != nil {
			return err
		}
		if current == nil {
			if err := q.InsertOrgDataKey(ctx, dbq.InsertOrgDataKeyParams{OrgID: orgID, Version: 1, WrappedKey: key.Wrapped, KeyID: key.KeyID}); err != nil {
				return fmt.Errorf("insert version 1: %w", err)
			}
			if err := q.SetCurrentOrgDataKey(ctx, dbq.SetCurrentOrgDataKeyParams{ID: orgID, Version: 1}); err != nil {
				return fmt.Errorf("make version 1 current: %w", err)
			}
		}
		row, err := q.GetCurrentOrgDataKey(ctx, orgID)
		if err != nil {
			return err
		}
		out = seal.OrgKey{Wrapped: row.WrappedKey, KeyID: row.KeyID, Version: row.Version}
		return nil
	})
	if err != nil {
		return seal.OrgKey{}, fmt.Errorf("save data key of organization %s: %w", orgID, err)
	}
	return out, nil
}
