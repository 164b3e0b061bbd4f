package seal

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// These tests look inside the cache to check what the public API cannot show: that evicted
// keys are actually zeroed.

type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestCacheZeroesExpiredKeys(t *testing.T) {
	clk := &manualClock{t: time.Unix(1_900_000_000, 0)}
	c := newKeyCache(time.Minute, clk.now)
	org := uuid.New()
	key := bytes.Repeat([]byte{0xAB}, DataKeySize)
	e := c.put(org, key, 1, "k")
	if got := c.get(org, 1); got != e {
		t.Fatal("fresh entry not returned")
	}
	if _, ok := e.aead(); !ok {
		t.Fatal("fresh entry unusable")
	}
	clk.advance(time.Minute)
	if got := c.get(org, 1); got != nil {
		t.Fatal("expired entry returned")
	}
	if !bytes.Equal(key, make([]byte, DataKeySize)) {
		t.Fatal("expired key bytes were not zeroed")
	}
	if _, ok := e.aead(); ok {
		t.Fatal("zeroed entry still hands out an AEAD")
	}
	if c.len() != 0 {
		t.Fatalf("cache holds %d entries after expiry, want 0", c.len())
	}
}

func TestCacheSweepsQuietOrgs(t *testing.T) {
	clk := &manualClock{t: time.Unix(1_900_000_000, 0)}
	c := newKeyCache(time.Minute, clk.now)
	quiet := bytes.Repeat([]byte{1}, DataKeySize)
	c.put(uuid.New(), quiet, 1, "k")
	clk.advance(2 * time.Minute)
	// Touching only another org must still drop (and zero) the quiet org's expired key.
	c.put(uuid.New(), bytes.Repeat([]byte{2}, DataKeySize), 1, "k")
	if !bytes.Equal(quiet, make([]byte, DataKeySize)) {
		t.Fatal("quiet org's expired key not zeroed by the sweep")
	}
	if c.len() != 1 {
		t.Fatalf("cache holds %d entries, want 1", c.len())
	}
}

func TestCacheReplaceAndPurgeZero(t *testing.T) {
	clk := &manualClock{t: time.Unix(1_900_000_000, 0)}
	c := newKeyCache(time.Minute, clk.now)
	org := uuid.New()
	first := bytes.Repeat([]byte{1}, DataKeySize)
	c.put(org, first, 1, "k")
	second := bytes.Repeat([]byte{2}, DataKeySize)
	c.put(org, second, 1, "k")
	if !bytes.Equal(first, make([]byte, DataKeySize)) {
		t.Fatal("replaced key not zeroed")
	}
	c.purge()
	if !bytes.Equal(second, make([]byte, DataKeySize)) || c.len() != 0 {
		t.Fatal("purge did not zero and drop keys")
	}
}
