package seal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/uuid"
)

// OrgKey is an organization's data key as persisted: wrapped, never in plaintext.
type OrgKey struct {
	// Wrapped is the data key encrypted by the KeyProvider (a KMS ciphertext blob or a keyring
	// envelope).
	Wrapped []byte
	// KeyID names the master key that wrapped it (KMS key ARN, or "local:<fingerprint>").
	KeyID string
	// Version is recorded in every sealed value's header so keys can be rotated later without
	// guessing which key sealed a value. The first key of an org is version 1.
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

// KeyStore persists wrapped org keys. The db package implements it on the organizations table;
// [MemoryKeyStore] implements it for tests.
type KeyStore interface {
	// LoadOrgKey returns the org's current key, or an error matching ErrNoOrgKey if it has none.
	LoadOrgKey(ctx context.Context, orgID uuid.UUID) (OrgKey, error)
	// SaveOrgKey stores key for orgID only if the org has no key yet, and returns the key that
	// is stored afterwards: key itself if this call inserted it, or the existing key if another
	// writer got there first. This insert-if-absent contract is what lets several API replicas
	// call EnsureOrgKey concurrently and still converge on one key; an implementation that
	// overwrote would orphan every value sealed under the loser's key.
	SaveOrgKey(ctx context.Context, orgID uuid.UUID, key OrgKey) (OrgKey, error)
}

// MemoryKeyStore is an in-memory KeyStore for tests and tools. It is safe for concurrent use
// and copies byte slices in and out, so callers cannot alias its contents.
type MemoryKeyStore struct {
	mu   sync.Mutex
	keys map[uuid.UUID]OrgKey
}

// NewMemoryKeyStore returns an empty MemoryKeyStore.
func NewMemoryKeyStore() *MemoryKeyStore {
	return &MemoryKeyStore{keys: make(map[uuid.UUID]OrgKey)}
}

// LoadOrgKey implements KeyStore.
func (s *MemoryKeyStore) LoadOrgKey(ctx context.Context, orgID uuid.UUID) (OrgKey, error) {
	if err := ctx.Err(); err != nil {
		return OrgKey{}, fmt.Errorf("load key for org %s: %w", orgID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[orgID]
	if !ok {
		return OrgKey{}, fmt.Errorf("load key for org %s: %w", orgID, ErrNoOrgKey)
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
	if existing, ok := s.keys[orgID]; ok {
		return cloneOrgKey(existing), nil
	}
	s.keys[orgID] = cloneOrgKey(key)
	return cloneOrgKey(key), nil
}

// PutOrgKey unconditionally replaces the org's key. It exists so tests can simulate a corrupted
// or mixed-up row (something the real store must never do); production code uses SaveOrgKey.
func (s *MemoryKeyStore) PutOrgKey(orgID uuid.UUID, key OrgKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[orgID] = cloneOrgKey(key)
}

func cloneOrgKey(k OrgKey) OrgKey {
	return OrgKey{Wrapped: bytes.Clone(k.Wrapped), KeyID: k.KeyID, Version: k.Version}
}
