package seal

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"
)

// DefaultCacheTTL is how long an unwrapped data key stays in memory when Options.CacheTTL is
// zero: long enough that a sync touching many credentials of one org costs one KMS Decrypt,
// short enough that disabling the KMS key takes effect within minutes.
const DefaultCacheTTL = 5 * time.Minute

// Sealed value layout (format version 1):
//
//	[0]      format version (formatV1)
//	[1:5]    org key version, uint32 big-endian
//	[5:17]   AES-GCM nonce (96 bits, random)
//	[17:]    AES-256-GCM ciphertext followed by the 16-byte tag
//
// The header is authenticated as part of the associated data, so neither version can be
// altered without failing authentication. Random nonces are safe here because each org key
// seals at most a few values per connection per hour, far below the ~2^32 messages per key at
// which random 96-bit nonces become a concern.
const (
	formatV1       = 1
	keyVersionOff  = 1
	nonceOff       = 5
	nonceSize      = 12
	headerSize     = nonceOff + nonceSize
	gcmTagSize     = 16
	minSealedSize  = headerSize + gcmTagSize
	sealAADLabel   = "jiraconnect/seal/value/v1"
	flightTimeout  = 30 * time.Second
	maxKeyAttempts = 5
)

// Options tunes a Sealer. The zero value is usable.
type Options struct {
	// CacheTTL is how long unwrapped data keys are cached; zero means DefaultCacheTTL.
	CacheTTL time.Duration
	// Now is the clock used for cache expiry; nil means time.Now. Tests inject a fake clock.
	Now func() time.Time
	// Logger receives key lifecycle events (never key material); nil means slog.Default().
	Logger *slog.Logger
}

// Sealer seals and opens credentials with per-org data keys. It is safe for concurrent use;
// one Sealer per process is intended, so its cache and single-flight are shared.
type Sealer struct {
	provider KeyProvider
	store    KeyStore
	cache    *keyCache
	flights  singleflight.Group
	log      *slog.Logger
}

// New returns a Sealer that generates and unwraps data keys with provider and persists them in
// store.
func New(provider KeyProvider, store KeyStore, opts Options) (*Sealer, error) {
	if provider == nil {
		return nil, errors.New("new sealer: key provider is nil")
	}
	if store == nil {
		return nil, errors.New("new sealer: key store is nil")
	}
	if opts.CacheTTL < 0 {
		return nil, fmt.Errorf("new sealer: negative cache ttl %v", opts.CacheTTL)
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Sealer{
		provider: provider,
		store:    store,
		cache:    newKeyCache(opts.CacheTTL, opts.Now),
		log:      opts.Logger.With(slog.String("component", "seal")),
	}, nil
}

// EnsureOrgKey makes sure orgID has a data key, generating and storing one if it has none. It
// is idempotent and safe to call concurrently, in one process or many: calls in one process
// share a single flight, and across processes KeyStore.SaveOrgKey's insert-if-absent makes
// every caller converge on the first stored key (losers discard theirs unused).
func (s *Sealer) EnsureOrgKey(ctx context.Context, orgID uuid.UUID) error {
	if orgID == uuid.Nil {
		return errors.New("ensure org data key: org id is nil")
	}
	_, err := s.flight(ctx, "ensure/"+orgID.String(), func(fctx context.Context) (*cachedKey, error) {
		return nil, s.ensure(fctx, orgID)
	})
	if err != nil {
		return fmt.Errorf("ensure data key for org %s: %w", orgID, err)
	}
	return nil
}

func (s *Sealer) ensure(ctx context.Context, orgID uuid.UUID) error {
	_, err := s.store.LoadOrgKey(ctx, orgID)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrNoOrgKey) {
		return err
	}
	dk, err := s.provider.GenerateDataKey(ctx, orgID)
	if err != nil {
		return err
	}
	if len(dk.Plaintext) != DataKeySize {
		zero(dk.Plaintext)
		return fmt.Errorf("provider returned a %d-byte data key, want %d", len(dk.Plaintext), DataKeySize)
	}
	mine := OrgKey{Wrapped: dk.Wrapped, KeyID: dk.KeyID, Version: 1}
	stored, err := s.store.SaveOrgKey(ctx, orgID, mine)
	if err != nil {
		zero(dk.Plaintext)
		return fmt.Errorf("save: %w", err)
	}
	if stored.Version == mine.Version && stored.KeyID == mine.KeyID && bytes.Equal(stored.Wrapped, mine.Wrapped) {
		// We won: cache the plaintext we already hold, saving the first Decrypt.
		s.cache.put(orgID, dk.Plaintext, mine.Version, mine.KeyID)
		s.cache.setCurrent(orgID, mine.Version)
		s.log.InfoContext(ctx, "created org data key",
			slog.String("org_id", orgID.String()), slog.String("key_id", mine.KeyID), slog.Int("key_version", int(mine.Version)))
		return nil
	}
	zero(dk.Plaintext)
	s.log.InfoContext(ctx, "org data key was created concurrently; discarded the duplicate",
		slog.String("org_id", orgID.String()), slog.String("key_id", stored.KeyID))
	return nil
}

// Seal encrypts plaintext for b under the org's current data key version. The result is
// self-describing (format and key version) and opens only with the same org, connection and
// purpose. Seal never retains plaintext.
//
// The current version is what the store said at most one CacheTTL ago: after a rotation, a
// process that has not asked since may seal under the previous version for up to that long. Such
// values still open (Open uses the version in the header), and the re-seal of a rotation waits
// CacheTTL before its last pass for exactly this reason.
func (s *Sealer) Seal(ctx context.Context, b Binding, plaintext []byte) ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("seal %s for connection %s: %w", b.Purpose, b.ConnectionID, err)
	}
	version, err := s.currentVersion(ctx, b.OrgID)
	if err != nil {
		return nil, fmt.Errorf("seal %s for connection %s: %w", b.Purpose, b.ConnectionID, err)
	}
	aead, err := s.aeadFor(ctx, b.OrgID, version)
	if err != nil {
		return nil, fmt.Errorf("seal %s for connection %s: %w", b.Purpose, b.ConnectionID, err)
	}
	var nonce [nonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("seal %s for connection %s: nonce: %w", b.Purpose, b.ConnectionID, err)
	}
	out := make([]byte, headerSize, headerSize+len(plaintext)+aead.Overhead())
	out[0] = formatV1
	binary.BigEndian.PutUint32(out[keyVersionOff:nonceOff], uint32(version))
	copy(out[nonceOff:headerSize], nonce[:])
	return aead.Seal(out, nonce[:], plaintext, sealAAD(b, out[:nonceOff])), nil
}

// Open decrypts a value produced by Seal for the same binding, with the key version named in its
// header — the current one or any older version the org still has, so values sealed before a
// rotation stay readable until they are re-sealed. Bytes that are not such a value (truncated,
// tampered, unknown format, a key version the org never had or has retired, or sealed for a
// different org, connection or purpose) yield an error matching ErrOpen (concretely an
// *OpenError). Failures to obtain the org's key (ErrNoOrgKey, KMS unavailable, ErrUnwrap) are
// reported as such and do not match ErrOpen, because they say nothing about the sealed bytes.
func (s *Sealer) Open(ctx context.Context, b Binding, sealed []byte) ([]byte, error) {
	fail := func(reason string, cause error) error {
		return fmt.Errorf("open %s for connection %s: %w", b.Purpose, b.ConnectionID, &OpenError{Reason: reason, Err: cause})
	}
	if err := b.validate(); err != nil {
		return nil, fail("invalid binding", err)
	}
	// Cheap structural checks come first so garbage never costs a KMS call.
	version, err := SealedKeyVersion(sealed)
	if err != nil {
		var oe *OpenError
		if errors.As(err, &oe) {
			return nil, fail(oe.Reason, nil)
		}
		return nil, fail(err.Error(), nil)
	}
	if len(sealed) < minSealedSize {
		return nil, fail("truncated input", nil)
	}
	aead, err := s.aeadFor(ctx, b.OrgID, version)
	switch {
	case errors.Is(err, ErrNoKeyVersion):
		return nil, fail(fmt.Sprintf("sealed under key version %d, which the org does not have", version), nil)
	case errors.Is(err, ErrKeyVersionRetired):
		return nil, fail(fmt.Sprintf("sealed under key version %d, which was retired", version), nil)
	case err != nil:
		return nil, fmt.Errorf("open %s for connection %s: %w", b.Purpose, b.ConnectionID, err)
	}
	pt, err := aead.Open(nil, sealed[nonceOff:headerSize], sealed[headerSize:], sealAAD(b, sealed[:nonceOff]))
	if err != nil {
		return nil, fail("authentication failed (wrong org, connection or purpose, or corrupted data)", nil)
	}
	return pt, nil
}

// SealedKeyVersion reads the key version from the header of a sealed value without opening it
// (the re-seal of a rotation uses it to find values sealed under older versions). Bytes too short
// for a header, of an unknown format or naming an impossible version yield an *OpenError. It does
// not authenticate anything: only Open can say the value is genuine.
func SealedKeyVersion(sealed []byte) (int32, error) {
	if len(sealed) < nonceOff {
		return 0, &OpenError{Reason: "truncated input"}
	}
	if sealed[0] != formatV1 {
		return 0, &OpenError{Reason: fmt.Sprintf("unsupported format version %d", sealed[0])}
	}
	v := binary.BigEndian.Uint32(sealed[keyVersionOff:nonceOff])
	if v == 0 || v > math.MaxInt32 {
		return 0, &OpenError{Reason: fmt.Sprintf("invalid key version %d", v)}
	}
	return int32(v), nil
}

// Purge drops and zeroes every cached data key, for example on shutdown. The Sealer stays
// usable; keys are unwrapped again on demand.
func (s *Sealer) Purge() { s.cache.purge() }

// CacheTTL is how long this Sealer keeps an unwrapped key and its belief about an org's current
// version (KEY_CACHE_TTL). After a rotation commits, a Sealer of another process may seal under
// the previous version for up to this long.
func (s *Sealer) CacheTTL() time.Duration { return s.cache.ttl }

// ForgetKeyVersion drops (and zeroes) one version of the org's key from this Sealer's cache, for
// example once it was retired; other processes drop it when their cache entry expires.
func (s *Sealer) ForgetKeyVersion(orgID uuid.UUID, version int32) { s.cache.drop(orgID, version) }

// ForgetCurrent makes the next Seal for orgID ask the store for the current version, so a
// rotation made by this process applies to its own seals at once.
func (s *Sealer) ForgetCurrent(orgID uuid.UUID) { s.cache.forgetCurrent(orgID) }

// sealAAD is the associated data of a sealed value: a domain label, the header (format and key
// version) and the binding, each length-prefixed so distinct bindings can never encode to the
// same bytes (for example purpose "ab" + x vs "a" + "bx").
func sealAAD(b Binding, header []byte) []byte {
	aad := make([]byte, 0, 4+len(sealAADLabel)+4+len(header)+2*(4+16)+4+len(b.Purpose))
	aad = appendLP(aad, []byte(sealAADLabel))
	aad = appendLP(aad, header)
	aad = appendLP(aad, b.OrgID[:])
	aad = appendLP(aad, b.ConnectionID[:])
	aad = appendLP(aad, []byte(b.Purpose))
	return aad
}

// currentVersion returns the org's current key version: cached for one TTL, otherwise loaded
// from the store (which also caches that version's key, saving the first Decrypt a Seal needs).
func (s *Sealer) currentVersion(ctx context.Context, orgID uuid.UUID) (int32, error) {
	if v, ok := s.cache.currentOf(orgID); ok {
		return v, nil
	}
	e, err := s.flight(ctx, "current/"+orgID.String(), func(fctx context.Context) (*cachedKey, error) {
		k, err := s.store.LoadOrgKey(fctx, orgID)
		if err != nil {
			return nil, fmt.Errorf("load data key for org %s: %w", orgID, err)
		}
		e := s.cache.get(orgID, k.Version)
		if e == nil {
			if e, err = s.unwrap(fctx, orgID, k); err != nil {
				return nil, err
			}
		}
		s.cache.setCurrent(orgID, k.Version)
		return e, nil
	})
	if err != nil {
		return 0, err
	}
	return e.version, nil
}

// aeadFor returns an AEAD for one version of the org's data key. It retries when the entry it
// obtained was evicted (and zeroed) before it could be used, which only happens when the TTL
// elapses or Purge runs at that exact moment.
func (s *Sealer) aeadFor(ctx context.Context, orgID uuid.UUID, version int32) (cipher.AEAD, error) {
	for range maxKeyAttempts {
		e, err := s.dataKey(ctx, orgID, version)
		if err != nil {
			return nil, err
		}
		if a, ok := e.aead(); ok {
			return a, nil
		}
	}
	return nil, fmt.Errorf("data key version %d of org %s was evicted %d times in a row while in use", version, orgID, maxKeyAttempts)
}

// dataKey returns the cached entry for one version of the org's key, unwrapping it on a miss.
// Concurrent misses for one version share a single load+Decrypt; the flight re-checks the cache
// first so callers that missed just before another flight finished do not trigger a second
// Decrypt.
func (s *Sealer) dataKey(ctx context.Context, orgID uuid.UUID, version int32) (*cachedKey, error) {
	if e := s.cache.get(orgID, version); e != nil {
		return e, nil
	}
	return s.flight(ctx, fmt.Sprintf("unwrap/%s/%d", orgID, version), func(fctx context.Context) (*cachedKey, error) {
		if e := s.cache.get(orgID, version); e != nil {
			return e, nil
		}
		k, err := s.store.LoadOrgKeyVersion(fctx, orgID, version)
		if err != nil {
			return nil, fmt.Errorf("load data key version %d of org %s: %w", version, orgID, err)
		}
		return s.unwrap(fctx, orgID, k)
	})
}

// unwrap decrypts a stored key version with the provider and caches it.
func (s *Sealer) unwrap(ctx context.Context, orgID uuid.UUID, k OrgKey) (*cachedKey, error) {
	if err := k.validate(); err != nil {
		return nil, fmt.Errorf("load data key version %d of org %s: stored key is invalid: %w", k.Version, orgID, err)
	}
	pt, err := s.provider.Decrypt(ctx, orgID, k.Wrapped, k.KeyID)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key version %d of org %s: %w", k.Version, orgID, err)
	}
	if len(pt) != DataKeySize {
		zero(pt)
		return nil, fmt.Errorf("unwrap data key version %d of org %s: provider returned %d bytes, want %d", k.Version, orgID, len(pt), DataKeySize)
	}
	s.log.DebugContext(ctx, "unwrapped org data key",
		slog.String("org_id", orgID.String()), slog.String("key_id", k.KeyID), slog.Int("key_version", int(k.Version)))
	return s.cache.put(orgID, pt, k.Version, k.KeyID), nil
}

// flight runs fn once per key among concurrent callers. fn runs detached from the first
// caller's cancellation (with its own timeout), because its result is shared: one impatient
// caller must not fail everyone waiting on the same unwrap. Each caller still returns as soon
// as its own ctx is done.
func (s *Sealer) flight(ctx context.Context, key string, fn func(context.Context) (*cachedKey, error)) (*cachedKey, error) {
	ch := s.flights.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flightTimeout)
		defer cancel()
		return fn(fctx)
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		e, _ := r.Val.(*cachedKey)
		return e, nil
	}
}
