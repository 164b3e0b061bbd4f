package tenancy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
)

// keyPrefix marks jiraconnect keys so secret scanners can find leaked ones.
const keyPrefix = "jck_"

// MinKeyTTL is the shortest lifetime a key may be created with.
const MinKeyTTL = time.Second

// KeyState is where a key is in its lifecycle. Only active keys authenticate.
type KeyState string

// Key states. Expiry and revocation are both final: an expired key is never renewed and a revoked
// one never restored.
const (
	KeyActive  KeyState = "active"
	KeyExpired KeyState = "expired"
	KeyRevoked KeyState = "revoked"
)

// KeyActor is the audit actor that created or revoked a key: an API key (its id) or the CLI.
type KeyActor struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// KeyInfo describes a key. It never holds the secret or its hash, so it can be shown to anyone
// who may list keys.
type KeyInfo struct {
	ID     uuid.UUID `json:"id"`
	Name   string    `json:"name"`
	Role   Role      `json:"role"`
	Prefix string    `json:"prefix"`
	// State is derived with the database's clock, the one authentication uses.
	State     KeyState  `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	// CreatedBy is nil only for keys created before creators were recorded and not found in the
	// audit log.
	CreatedBy  *KeyActor  `json:"created_by"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	RevokedBy  *KeyActor  `json:"revoked_by"`
}

// APIKey is a freshly minted key. Plaintext is shown once and never stored; it is left out of
// JSON and of every formatted or logged form of the value.
type APIKey struct {
	KeyInfo
	Plaintext string `json:"-"`
}

// String never reveals the key.
func (k APIKey) String() string { return "APIKey(" + k.Prefix + "…)" }

// GoString never reveals the key.
func (k APIKey) GoString() string { return k.String() }

// LogValue never reveals the key.
func (k APIKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// KeyRequest asks for a new key, as a caller (API or CLI) gives it; CreateKey validates every
// field before anything is written.
type KeyRequest struct {
	Name string
	Role string
	// ExpiresIn is a Go duration ("720h") from now; ExpiresAt an RFC 3339 time. At most one of
	// them; neither means the operator's maximum lifetime, or no expiry when there is none.
	ExpiresIn *string
	ExpiresAt *string
}

// FieldError is a validation error naming the offending field (as the API spells it).
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

var (
	// ErrOrgNotFound means the organization does not exist.
	ErrOrgNotFound = errors.New("organization not found")
	// ErrKeyNotFound means the organization has no key with that id.
	ErrKeyNotFound = errors.New("api key not found")
	// ErrLastAdminKey refuses to revoke an organization's last active admin key without force:
	// afterwards nobody could manage its keys or connections through the API.
	ErrLastAdminKey = errors.New("this is the organization's last active admin key")
)

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

// ValidateKeyName checks a key name and returns it trimmed.
func ValidateKeyName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", &FieldError{"name", "must be valid UTF-8"}
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return "", &FieldError{"name", "must be 1-200 characters"}
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		return "", &FieldError{"name", "must not contain control characters"}
	}
	return name, nil
}

// ParseKeyRequest validates a key request at time now against the maximum lifetime maxTTL (zero:
// none) and returns the key's name, role and expiry (nil: never). Errors are *FieldError.
func ParseKeyRequest(now time.Time, req KeyRequest, maxTTL time.Duration) (name string, role Role, expiresAt *time.Time, err error) {
	if name, err = ValidateKeyName(req.Name); err != nil {
		return "", "", nil, err
	}
	if role, err = ParseRole(req.Role); err != nil {
		return "", "", nil, &FieldError{"role", "must be admin, member or auditor"}
	}
	if expiresAt, err = resolveExpiry(now, req.ExpiresIn, req.ExpiresAt, maxTTL); err != nil {
		return "", "", nil, err
	}
	return name, role, expiresAt, nil
}

// resolveExpiry turns expires_in or expires_at into the key's expiry. With a maximum lifetime, a
// key asked for without expiry gets the maximum, and a later expiry is refused rather than
// silently shortened, so the caller knows when the key stops working. A maximum below MinKeyTTL
// counts as MinKeyTTL, so that every key is valid for at least that long.
func resolveExpiry(now time.Time, expiresIn, expiresAt *string, maxTTL time.Duration) (*time.Time, error) {
	if maxTTL > 0 && maxTTL < MinKeyTTL {
		maxTTL = MinKeyTTL
	}
	var exp time.Time
	field := ""
	switch {
	case expiresIn != nil && expiresAt != nil:
		return nil, &FieldError{"expires_at", "give expires_in or expires_at, not both"}
	case expiresIn != nil:
		field = "expires_in"
		d, err := time.ParseDuration(*expiresIn)
		if err != nil || len(*expiresIn) > 64 {
			return nil, &FieldError{field, "must be a duration such as 720h or 90m"}
		}
		if d < MinKeyTTL {
			return nil, &FieldError{field, "must be at least " + MinKeyTTL.String()}
		}
		exp = now.Add(d)
	case expiresAt != nil:
		field = "expires_at"
		t, err := time.Parse(time.RFC3339, *expiresAt)
		if err != nil || len(*expiresAt) > 64 {
			return nil, &FieldError{field, "must be an RFC 3339 time such as 2030-01-02T15:04:05Z"}
		}
		if t.Before(now.Add(MinKeyTTL)) {
			return nil, &FieldError{field, "must be in the future"}
		}
		exp = t
	case maxTTL > 0:
		exp = now.Add(maxTTL)
	default:
		return nil, nil
	}
	if maxTTL > 0 && exp.After(now.Add(maxTTL)) {
		return nil, &FieldError{field, "must be at most " + maxTTL.String() + " from now (the operator's maximum key lifetime)"}
	}
	// Postgres keeps microseconds: the stored expiry is the one returned.
	exp = exp.UTC().Truncate(time.Microsecond)
	return &exp, nil
}

// CreateKey validates req and mints a key for orgID, audited as `api_key.create` in the same
// transaction. Errors are a *FieldError (nothing written), ErrOrgNotFound, or a failure.
func (s *Service) CreateKey(ctx context.Context, orgID uuid.UUID, req KeyRequest, by audit.Caller) (APIKey, error) {
	name, role, expiresAt, err := ParseKeyRequest(time.Now(), req, s.MaxKeyTTL)
	if err != nil {
		return APIKey{}, err
	}
	var key APIKey
	err = s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		if _, err := q.GetOrganization(ctx, orgID); errors.Is(err, pgx.ErrNoRows) {
			return ErrOrgNotFound
		} else if err != nil {
			return fmt.Errorf("read organization: %w", err)
		}
		if key, err = insertKey(ctx, q, orgID, name, role, expiresAt, by.Actor); err != nil {
			return err
		}
		meta := map[string]any{"name": name, "role": string(role), "prefix": key.Prefix, "expires_at": key.ExpiresAt}
		_, err = audit.Record(ctx, q, audit.Entry{OrgID: orgID, Actor: by.Actor, Action: "api_key.create",
			TargetType: "api_key", TargetID: key.ID.String(), SourceIP: by.SourceIP, Metadata: meta})
		return err
	})
	if err != nil {
		return APIKey{}, fmt.Errorf("create api key in organization %s: %w", orgID, err)
	}
	return key, nil
}

func insertKey(ctx context.Context, q *dbq.Queries, orgID uuid.UUID, name string, role Role, expiresAt *time.Time, by audit.Actor) (APIKey, error) {
	plaintext, prefix, hash, err := newKeyMaterial()
	if err != nil {
		return APIKey{}, err
	}
	byType, byID := string(by.Type), by.ID
	row, err := q.CreateAPIKey(ctx, dbq.CreateAPIKeyParams{OrgID: orgID, Name: name, Role: string(role), Prefix: prefix,
		KeyHash: hash, ExpiresAt: expiresAt, CreatedByType: &byType, CreatedByID: &byID})
	if err != nil {
		return APIKey{}, fmt.Errorf("insert api key: %w", err)
	}
	return APIKey{Plaintext: plaintext, KeyInfo: KeyInfo{ID: row.ID, Name: row.Name, Role: role, Prefix: row.Prefix,
		State: KeyActive, CreatedAt: row.CreatedAt.UTC(), CreatedBy: &KeyActor{Type: byType, ID: byID},
		ExpiresAt: utcPtr(row.ExpiresAt)}}, nil
}

// ListKeys returns every key of orgID, newest first, in all states.
func (s *Service) ListKeys(ctx context.Context, orgID uuid.UUID) ([]KeyInfo, error) {
	var out []KeyInfo
	err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		if _, err := q.GetOrganization(ctx, orgID); errors.Is(err, pgx.ErrNoRows) {
			return ErrOrgNotFound
		} else if err != nil {
			return fmt.Errorf("read organization: %w", err)
		}
		rows, err := q.ListAPIKeys(ctx)
		if err != nil {
			return err
		}
		out = make([]KeyInfo, 0, len(rows))
		for _, r := range rows {
			out = append(out, keyInfoOf(r))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list api keys of organization %s: %w", orgID, err)
	}
	return out, nil
}

// RevokeKey revokes key keyID of orgID at once: authentication refuses it from the next request
// on, on every process. It is audited as `api_key.revoke` in the same transaction.
//
// Revoking is idempotent: a revoked key is returned as it is, with changed false and no audit row.
// The organization's last active admin key is only revoked with force (ErrLastAdminKey
// otherwise). Revocations within an organization serialize on its row, so two admins revoking
// each other's keys at the same time cannot both succeed and leave it without an admin key.
func (s *Service) RevokeKey(ctx context.Context, orgID, keyID uuid.UUID, force bool, by audit.Caller) (info KeyInfo, changed bool, err error) {
	err = s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		if _, err := q.LockOrganization(ctx, orgID); errors.Is(err, pgx.ErrNoRows) {
			return ErrOrgNotFound
		} else if err != nil {
			return fmt.Errorf("lock organization: %w", err)
		}
		row, err := q.GetAPIKeyForUpdate(ctx, keyID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrKeyNotFound
		}
		if err != nil {
			return fmt.Errorf("read api key: %w", err)
		}
		info = keyInfoOf(dbq.ListAPIKeysRow(row))
		if info.State == KeyRevoked {
			return nil
		}
		lastAdmin := false
		if info.Role == RoleAdmin && info.State == KeyActive {
			others, err := q.CountOtherActiveAdminKeys(ctx, keyID)
			if err != nil {
				return fmt.Errorf("count active admin keys: %w", err)
			}
			if lastAdmin = others == 0; lastAdmin && !force {
				return ErrLastAdminKey
			}
		}
		revokedAt, err := q.RevokeAPIKey(ctx, dbq.RevokeAPIKeyParams{ID: keyID,
			RevokedByType: string(by.Actor.Type), RevokedByID: by.Actor.ID})
		if err != nil {
			return fmt.Errorf("revoke api key: %w", err)
		}
		stateBefore := info.State
		revokedAt = revokedAt.UTC()
		info.State, info.RevokedAt = KeyRevoked, &revokedAt
		info.RevokedBy = &KeyActor{Type: string(by.Actor.Type), ID: by.Actor.ID}
		changed = true
		meta := map[string]any{"name": info.Name, "role": string(info.Role), "prefix": info.Prefix,
			"state_before": string(stateBefore), "force": force, "last_admin_key": lastAdmin}
		_, err = audit.Record(ctx, q, audit.Entry{OrgID: orgID, Actor: by.Actor, Action: "api_key.revoke",
			TargetType: "api_key", TargetID: keyID.String(), SourceIP: by.SourceIP, Metadata: meta})
		return err
	})
	if err != nil {
		return KeyInfo{}, false, fmt.Errorf("revoke api key %s of organization %s: %w", keyID, orgID, err)
	}
	return info, changed, nil
}

func keyInfoOf(r dbq.ListAPIKeysRow) KeyInfo {
	return KeyInfo{ID: r.ID, Name: r.Name, Role: Role(r.Role), Prefix: r.Prefix, State: KeyState(r.State),
		CreatedAt: r.CreatedAt.UTC(), CreatedBy: actorOf(r.CreatedByType, r.CreatedByID),
		LastUsedAt: utcPtr(r.LastUsedAt), ExpiresAt: utcPtr(r.ExpiresAt), RevokedAt: utcPtr(r.RevokedAt),
		RevokedBy: actorOf(r.RevokedByType, r.RevokedByID)}
}

func actorOf(typ, id *string) *KeyActor {
	if typ == nil || id == nil {
		return nil
	}
	return &KeyActor{Type: *typ, ID: *id}
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
