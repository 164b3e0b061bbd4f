package seal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/uuid"
)

// OrgKey is one version of an organization's data key as persisted: wrapped, never in plaintext.
type OrgKey struct {
	// Wrapped is the data key encrypted by the KeyProvider (a KMS ciphertext blob or a keyring
	// envelope).
	Wrapped []byte
	// KeyID names the master key that wrapped it (KMS key ARN, or "local:<fingerprint>").
	KeyID string
	// Version is recorded in every sealed value's header, so a value opens with the version
	// that sealed it while newer versions exist. The first key of an org is version 1; each
	// rotation adds the next.
	Version int32
}

func (k OrgKey) validate() error {
	switch {
	case len(k.Wrapped) == 0:
		return errors.New("wrapped key is empty")
	case k.KeyID == "":
		return errors.New("key id is empty")
	case k.Version < 1:
		return fmt.Errorf("key version %d is not positive", k.Version)
	}
	return nil
}

var (
	// ErrNoKeyVersion is returned by [KeyStore.LoadOrgKeyVersion] for a version the organization
	// never had. Open reports it as an [OpenError]: such bytes can never be opened.
	ErrNoKeyVersion = errors.New("seal: organization has no such data key version")
	// ErrKeyVersionRetired is returned by [KeyStore.LoadOrgKeyVersion] for a retired version,
	// whose wrapped key was destroyed. Open reports it as an [OpenError].
	ErrKeyVersionRetired = errors.New("seal: data key version is retired")
)

// KeyStore persists wrapped org keys, one row per version. The tenancy package implements it on
// the org_data_keys table; [MemoryKeyStore] implements it for tests.
type KeyStore interface {
	// LoadOrgKey returns the org's current key (the version new values are sealed under), or an
	// error matching ErrNoOrgKey if it has none.
	LoadOrgKey(ctx context.Context, orgID uuid.UUID) (OrgKey, error)
	// LoadOrgKeyVersion returns one version of the org's key, current or older, or an error
	// matching ErrNoOrgKey (the org has no key at all), ErrNoKeyVersion (the org never had this
	// version) or ErrKeyVersionRetired (the version was destroyed).
	LoadOrgKeyVersion(ctx context.Context, orgID uuid.UUID, version int32) (OrgKey, error)
	// SaveOrgKey stores key as the org's first key (version 1) only if the org has no key yet,
	// and returns the current key afterwards: key itself if this call inserted it, or the
	// existing key if another writer got there first. This insert-if-absent contract is what
	// lets several API replicas call EnsureOrgKey concurrently and still converge on one key; an
	// implementation that overwrote would orphan every value sealed under the loser's key.
	SaveOrgKey(ctx context.Context, orgID uuid.UUID, key OrgKey) (OrgKey, error)
}

// MemoryKeyStore is an in-memory KeyStore for tests and tools. It is safe for concurrent use
// and copies byte slices in and out, so callers cannot alias its contents.
type MemoryKeyStore struct {
	mu       sync.Mutex
	versions map[uuid.UUID]map[int32]OrgKey
	retired  map[uuid.UUID]map[int32]bool
	current  map[uuid.UUID]int32
}

// NewMemoryKeyStore returns an empty MemoryKeyStore.
func NewMemoryKeyStore() *MemoryKeyStore {
	return &MemoryKeyStore{
		versions: make(map[uuid.UUID]map[int32]OrgKey),
		retired:  make(map[uuid.UUID]map[int32]bool),
		current:  make(map[uuid.UUID]int32),
	}
}

// LoadOrgKey implements KeyStore.
func (s *MemoryKeyStore) LoadOrgKey(ctx context.Context, orgID uuid.UUID) (OrgKey, error) {
	if err := ctx.Err(); err != nil {
		return OrgKey{}, fmt.Errorf("load key for org %s: %w", orgID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.current[orgID]
	if !ok {
		return OrgKey{}, fmt.Errorf("load key for org %s: %w", orgID, ErrNoOrgKey)
	}
	return cloneOrgKey(s.versions[orgID][v]), nil
}

// LoadOrgKeyVersion implements KeyStore.
func (s *MemoryKeyStore) LoadOrgKeyVersion(ctx context.Context, orgID uuid.UUID, version int32) (OrgKey, error) {
	if err := ctx.Err(); err != nil {
		return OrgKey{}, fmt.Errorf("load key version %d of org %s: %w", version, orgID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.current[orgID]; !ok {
		return OrgKey{}, fmt.Errorf("load key version %d of org %s: %w", version, orgID, ErrNoOrgKey)
	}
	if s.retired[orgID][version] {
		return OrgKey{}, fmt.Errorf("load key version %d of org %s: %w", version, orgID, ErrKeyVersionRetired)
	}
	k, ok := s.versions[orgID][version]
	if !ok {
		return OrgKey{}, fmt.Errorf("load key version %d of org %s: %w", version, orgID, ErrNoKeyVersion)
	}
	return cloneOrgKey(k), nil
}

// SaveOrgKey implements KeyStore (insert-if-absent, returns the stored winner).
func (s *MemoryKeyStore) SaveOrgKey(ctx context.Context, orgID uuid.UUID, key OrgKey) (OrgKey, error) {
	if err := ctx.Err(); err != nil {
		return OrgKey{}, fmt.Errorf("save key for org %s: %w", orgID, err)
	}
	if orgID == uuid.Nil {
		return OrgKey{}, errors.New("save org key: org id is nil")
	}
	if err := key.validate(); err != nil {
		return OrgKey{}, fmt.Errorf("save key for org %s: %w", orgID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.current[orgID]; ok {
		return cloneOrgKey(s.versions[orgID][v]), nil
	}
	key.Version = 1
	s.putLocked(orgID, key)
	s.current[orgID] = 1
	return cloneOrgKey(key), nil
}

// AddOrgKeyVersion stores key as the org's next version and makes it current, as a rotation
// does; it returns the stored key with its version.
func (s *MemoryKeyStore) AddOrgKeyVersion(orgID uuid.UUID, key OrgKey) (OrgKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.current[orgID]
	if !ok {
		return OrgKey{}, fmt.Errorf("rotate key of org %s: %w", orgID, ErrNoOrgKey)
	}
	key.Version = cur + 1
	if err := key.validate(); err != nil {
		return OrgKey{}, fmt.Errorf("rotate key of org %s: %w", orgID, err)
	}
	s.putLocked(orgID, key)
	s.current[orgID] = key.Version
	return cloneOrgKey(key), nil
}

// ReplaceOrgKeyWrapping replaces the wrapping of one version (a re-wrap under another master
// key) if it is still old, and reports whether it did.
func (s *MemoryKeyStore) ReplaceOrgKeyWrapping(orgID uuid.UUID, old, next OrgKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.versions[orgID][old.Version]
	if !ok || s.retired[orgID][old.Version] || next.Version != old.Version || k.KeyID != old.KeyID || !bytes.Equal(k.Wrapped, old.Wrapped) {
		return false
	}
	s.putLocked(orgID, next)
	return true
}

// RetireOrgKeyVersion destroys a version that is not current. Unlike the database, it cannot
// know whether a value still references the version: tests use it to show what happens then.
func (s *MemoryKeyStore) RetireOrgKeyVersion(orgID uuid.UUID, version int32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current[orgID] == version {
		return fmt.Errorf("retire key version %d of org %s: it is current", version, orgID)
	}
	if _, ok := s.versions[orgID][version]; !ok {
		return fmt.Errorf("retire key version %d of org %s: %w", version, orgID, ErrNoKeyVersion)
	}
	delete(s.versions[orgID], version)
	if s.retired[orgID] == nil {
		s.retired[orgID] = map[int32]bool{}
	}
	s.retired[orgID][version] = true
	return nil
}

// PutOrgKey unconditionally replaces the org's current key. It exists so tests can simulate a
// corrupted or mixed-up row (something the real store must never do); production code uses
// SaveOrgKey.
func (s *MemoryKeyStore) PutOrgKey(orgID uuid.UUID, key OrgKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.current[orgID]
	if !ok {
		v = 1
		s.current[orgID] = v
	}
	key.Version = v
	s.putLocked(orgID, key)
}

func (s *MemoryKeyStore) putLocked(orgID uuid.UUID, key OrgKey) {
	if s.versions[orgID] == nil {
		s.versions[orgID] = map[int32]OrgKey{}
	}
	s.versions[orgID][key.Version] = cloneOrgKey(key)
}

func cloneOrgKey(k OrgKey) OrgKey {
	return OrgKey{Wrapped: bytes.Clone(k.Wrapped), KeyID: k.KeyID, Version: k.Version}
}
