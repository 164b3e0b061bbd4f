package seal

import (
	"crypto/cipher"
	"sync"
	"time"

	"github.com/google/uuid"
)

// keyRef names one version of one organization's data key.
type keyRef struct {
	org     uuid.UUID
	version int32
}

// cachedKey is one unwrapped data key. The raw key bytes are the only long-lived copy of the
// secret this package controls; they are zeroed when the entry is evicted. Users never hold the
// raw bytes: they ask for a fresh AEAD under the entry's lock, so zeroing can never race with
// an encryption in progress (which would otherwise silently seal under an all-zero key).
type cachedKey struct {
	orgID   uuid.UUID
	version int32
	keyID   string
	expires time.Time

	mu  sync.Mutex
	key []byte // nil once zeroed
}

// aead returns an AES-256-GCM instance for the key, or false if the entry has been evicted.
// The AEAD holds its own expanded key schedule, which Go gives no way to wipe; it is
// short-lived garbage, which is as far as "zeroed where practical" goes.
func (e *cachedKey) aead() (cipher.AEAD, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.key == nil {
		return nil, false
	}
	a, err := newGCM(e.key)
	if err != nil {
		// Unreachable: keys are checked to be 32 bytes before they are cached.
		return nil, false
	}
	return a, true
}

func (e *cachedKey) zero() {
	e.mu.Lock()
	defer e.mu.Unlock()
	zero(e.key)
	e.key = nil
}

// currentVersion is what the store said an organization's current key version was, and until
// when this process believes it without asking again.
type currentVersion struct {
	version int32
	expires time.Time
}

// keyCache maps (org, version) to unwrapped data keys for a bounded time, and remembers each
// org's current version for the same time. The TTL bounds how long a key revoked or disabled in
// KMS keeps working in this process, how long plaintext key material stays in memory after an org
// goes quiet, and how long after a rotation this process may still seal under the previous
// version (the re-seal waits that long before its last pass; see Sealer.CacheTTL).
type keyCache struct {
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	entries   map[keyRef]*cachedKey
	current   map[uuid.UUID]currentVersion
	lastSweep time.Time
}

func newKeyCache(ttl time.Duration, now func() time.Time) *keyCache {
	return &keyCache{ttl: ttl, now: now, entries: make(map[keyRef]*cachedKey), current: make(map[uuid.UUID]currentVersion), lastSweep: now()}
}

// get returns the live entry for one key version, dropping (and zeroing) it if it has expired.
func (c *keyCache) get(orgID uuid.UUID, version int32) *cachedKey {
	ref := keyRef{orgID, version}
	c.mu.Lock()
	e, ok := c.entries[ref]
	if !ok {
		c.mu.Unlock()
		return nil
	}
	if c.now().Before(e.expires) {
		c.mu.Unlock()
		return e
	}
	delete(c.entries, ref)
	c.mu.Unlock()
	e.zero()
	return nil
}

// put caches key (taking ownership of the slice) and returns the new entry. It replaces any
// previous entry for the same version, zeroing it, and sweeps expired entries at most once per TTL
// so keys of orgs that went quiet do not linger until their org is touched again.
func (c *keyCache) put(orgID uuid.UUID, key []byte, version int32, keyID string) *cachedKey {
	now := c.now()
	e := &cachedKey{orgID: orgID, version: version, keyID: keyID, expires: now.Add(c.ttl), key: key}
	ref := keyRef{orgID, version}
	var evicted []*cachedKey
	c.mu.Lock()
	if old, ok := c.entries[ref]; ok {
		evicted = append(evicted, old)
	}
	c.entries[ref] = e
	if now.Sub(c.lastSweep) >= c.ttl {
		c.lastSweep = now
		for r, other := range c.entries {
			if !now.Before(other.expires) {
				delete(c.entries, r)
				evicted = append(evicted, other)
			}
		}
		for org, cv := range c.current {
			if !now.Before(cv.expires) {
				delete(c.current, org)
			}
		}
	}
	c.mu.Unlock()
	for _, old := range evicted {
		old.zero()
	}
	return e
}

// currentOf returns the org's current version as last loaded, if that is younger than the TTL.
func (c *keyCache) currentOf(orgID uuid.UUID) (int32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cv, ok := c.current[orgID]
	if !ok || !c.now().Before(cv.expires) {
		return 0, false
	}
	return cv.version, true
}

// setCurrent remembers the org's current version for one TTL.
func (c *keyCache) setCurrent(orgID uuid.UUID, version int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current[orgID] = currentVersion{version: version, expires: c.now().Add(c.ttl)}
}

// forgetCurrent drops what the cache believes the org's current version is.
func (c *keyCache) forgetCurrent(orgID uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.current, orgID)
}

// drop removes and zeroes the entry of one key version, if cached.
func (c *keyCache) drop(orgID uuid.UUID, version int32) {
	ref := keyRef{orgID, version}
	c.mu.Lock()
	e, ok := c.entries[ref]
	delete(c.entries, ref)
	c.mu.Unlock()
	if ok {
		e.zero()
	}
}

// purge drops and zeroes every entry.
func (c *keyCache) purge() {
	c.mu.Lock()
	all := c.entries
	c.entries = make(map[keyRef]*cachedKey)
	c.current = make(map[uuid.UUID]currentVersion)
	c.mu.Unlock()
	for _, e := range all {
		e.zero()
	}
}

// len reports the number of key entries, expired or not (for tests).
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
