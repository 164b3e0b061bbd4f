package seal

import (
	"crypto/cipher"
	"sync"
	"time"

	"github.com/google/uuid"
)

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

// keyCache maps org ids to unwrapped data keys for a bounded time. The TTL bounds how long a
// key revoked or disabled in KMS keeps working in this process, and how long plaintext key
// material stays in memory after an org goes quiet.
type keyCache struct {
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	entries   map[uuid.UUID]*cachedKey
	lastSweep time.Time
}

func newKeyCache(ttl time.Duration, now func() time.Time) *keyCache {
	return &keyCache{ttl: ttl, now: now, entries: make(map[uuid.UUID]*cachedKey), lastSweep: now()}
}

// get returns the live entry for orgID, dropping (and zeroing) it if it has expired.
func (c *keyCache) get(orgID uuid.UUID) *cachedKey {
	c.mu.Lock()
	e, ok := c.entries[orgID]
	if !ok {
		c.mu.Unlock()
		return nil
	}
	if c.now().Before(e.expires) {
		c.mu.Unlock()
		return e
	}
	delete(c.entries, orgID)
	c.mu.Unlock()
	e.zero()
	return nil
}

// put caches key (taking ownership of the slice) and returns the new entry. It replaces any
// previous entry for the org, zeroing it, and sweeps expired entries at most once per TTL so
// keys of orgs that went quiet do not linger until their org is touched again.
func (c *keyCache) put(orgID uuid.UUID, key []byte, version int32, keyID string) *cachedKey {
	now := c.now()
	e := &cachedKey{orgID: orgID, version: version, keyID: keyID, expires: now.Add(c.ttl), key: key}
	var evicted []*cachedKey
	c.mu.Lock()
	if old, ok := c.entries[orgID]; ok {
		evicted = append(evicted, old)
	}
	c.entries[orgID] = e
	if now.Sub(c.lastSweep) >= c.ttl {
		c.lastSweep = now
		for id, other := range c.entries {
			if !now.Before(other.expires) {
				delete(c.entries, id)
				evicted = append(evicted, other)
			}
		}
	}
	c.mu.Unlock()
	for _, old := range evicted {
		old.zero()
	}
	return e
}

// purge drops and zeroes every entry.
func (c *keyCache) purge() {
	c.mu.Lock()
	all := c.entries
	c.entries = make(map[uuid.UUID]*cachedKey)
	c.mu.Unlock()
	for _, e := range all {
		e.zero()
	}
}

// len reports the number of entries, expired or not (for tests).
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
