package seal_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/seal/kmslocal"
)

// providers returns both KeyProvider implementations, so every Sealer behaviour is checked with
// each.
func providers(t *testing.T) map[string]seal.KeyProvider {
	return map[string]seal.KeyProvider{
		"kms":     newKMSEnv(t).provider,
		"keyring": newLocalKeyring(t),
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	for name, p := range providers(t) {
		t.Run(name, func(t *testing.T) {
			s := newSealer(t, p, seal.NewMemoryKeyStore(), seal.Options{})
			org := uuid.New()
			if err := s.EnsureOrgKey(ctx, org); err != nil {
				t.Fatal(err)
			}
			for _, purpose := range seal.Purposes() {
				for _, size := range []int{0, 1, 31, 32, 33, 1000, 64 << 10} {
					b := seal.Binding{OrgID: org, ConnectionID: uuid.New(), Purpose: purpose}
					pt := bytes.Repeat([]byte{byte(size), 0xA5}, size/2+1)[:size]
					sealed, err := s.Seal(ctx, b, pt)
					if err != nil {
						t.Fatalf("seal %s/%d: %v", purpose, size, err)
					}
					if want := 17 + size + 16; len(sealed) != want {
						t.Fatalf("sealed length %d, want %d", len(sealed), want)
					}
					got, err := s.Open(ctx, b, sealed)
					if err != nil {
						t.Fatalf("open %s/%d: %v", purpose, size, err)
					}
					if !bytes.Equal(got, pt) {
						t.Fatalf("open %s/%d returned different bytes", purpose, size)
					}
				}
			}
		})
	}
}

func TestSealIsRandomized(t *testing.T) {
	ctx := context.Background()
	s := newSealer(t, newLocalKeyring(t), seal.NewMemoryKeyStore(), seal.Options{})
	b := seal.Binding{OrgID: uuid.New(), ConnectionID: uuid.New(), Purpose: seal.PurposePAT}
	if err := s.EnsureOrgKey(ctx, b.OrgID); err != nil {
		t.Fatal(err)
	}
	a1, err := s.Seal(ctx, b, []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := s.Seal(ctx, b, []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a1, a2) || bytes.Equal(a1[5:17], a2[5:17]) {
		t.Fatal("two seals of the same plaintext share a nonce/ciphertext")
	}
}

func TestSealedNeverContainsPlaintext(t *testing.T) {
	ctx := context.Background()
	for name, p := range providers(t) {
		t.Run(name, func(t *testing.T) {
			s := newSealer(t, p, seal.NewMemoryKeyStore(), seal.Options{})
			b := seal.Binding{OrgID: uuid.New(), ConnectionID: uuid.New(), Purpose: seal.PurposeOAuthTokens}
			if err := s.EnsureOrgKey(ctx, b.OrgID); err != nil {
				t.Fatal(err)
			}
			secret := []byte(`{"access_token":"eyJhbGciOiJSUzI1NiJ9.SECRET-ACCESS","refresh_token":"SECRET-REFRESH-0123456789"}`)
			for range 50 {
				sealed, err := s.Seal(ctx, b, secret)
				if err != nil {
					t.Fatal(err)
				}
				// No 8-byte window of the plaintext may appear in the output.
				for i := 0; i+8 <= len(secret); i++ {
					if bytes.Contains(sealed, secret[i:i+8]) {
						t.Fatalf("sealed output contains plaintext bytes %q", secret[i:i+8])
					}
				}
			}
		})
	}
}

func sealOne(t *testing.T, s *seal.Sealer, b seal.Binding, pt string) []byte {
	t.Helper()
	sealed, err := s.Seal(context.Background(), b, []byte(pt))
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

func requireOpenErr(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: open succeeded", what)
	}
	if !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("%s: error %v does not match ErrOpen", what, err)
	}
	var oe *seal.OpenError
	if !errors.As(err, &oe) || oe.Reason == "" {
		t.Fatalf("%s: error %v is not an *OpenError with a reason", what, err)
	}
}

func TestOpenWrongBinding(t *testing.T) {
	ctx := context.Background()
	for name, p := range providers(t) {
		t.Run(name, func(t *testing.T) {
			s := newSealer(t, p, seal.NewMemoryKeyStore(), seal.Options{})
			orgA, orgB := uuid.New(), uuid.New()
			for _, o := range []uuid.UUID{orgA, orgB} {
				if err := s.EnsureOrgKey(ctx, o); err != nil {
					t.Fatal(err)
				}
			}
			b := seal.Binding{OrgID: orgA, ConnectionID: uuid.New(), Purpose: seal.PurposeAPIToken}
			sealed := sealOne(t, s, b, "api-token-value")

			wrongOrg := b
			wrongOrg.OrgID = orgB
			wrongConn := b
			wrongConn.ConnectionID = uuid.New()
			for name, wb := range map[string]seal.Binding{"org": wrongOrg, "connection": wrongConn} {
				_, err := s.Open(ctx, wb, sealed)
				requireOpenErr(t, err, "wrong "+name)
			}
			for _, purpose := range seal.Purposes() {
				if purpose == b.Purpose {
					continue
				}
				wp := b
				wp.Purpose = purpose
				_, err := s.Open(ctx, wp, sealed)
				requireOpenErr(t, err, "wrong purpose "+purpose)
			}
			// The right binding still opens: failures above were not a broken sealer.
			if got, err := s.Open(ctx, b, sealed); err != nil || string(got) != "api-token-value" {
				t.Fatalf("open with right binding: %q, %v", got, err)
			}

			// An org without a key is a key problem, not a bad-ciphertext problem.
			noKey := b
			noKey.OrgID = uuid.New()
			_, err := s.Open(ctx, noKey, sealed)
			if !errors.Is(err, seal.ErrNoOrgKey) || errors.Is(err, seal.ErrOpen) {
				t.Fatalf("open for org without key: %v, want ErrNoOrgKey and not ErrOpen", err)
			}
		})
	}
}

func TestOpenTampered(t *testing.T) {
	ctx := context.Background()
	s := newSealer(t, newLocalKeyring(t), seal.NewMemoryKeyStore(), seal.Options{})
	b := seal.Binding{OrgID: uuid.New(), ConnectionID: uuid.New(), Purpose: seal.PurposeWebhookSecret}
	if err := s.EnsureOrgKey(ctx, b.OrgID); err != nil {
		t.Fatal(err)
	}
	sealed := sealOne(t, s, b, "whsec_0123456789abcdef")
	for i := range sealed {
		for _, mask := range []byte{0x01, 0x80, 0xFF} {
			tampered := bytes.Clone(sealed)
			tampered[i] ^= mask
			_, err := s.Open(ctx, b, tampered)
			requireOpenErr(t, err, fmt.Sprintf("byte %d ^ %#x", i, mask))
		}
	}
	if _, err := s.Open(ctx, b, sealed); err != nil {
		t.Fatalf("original no longer opens: %v", err)
	}
}

func TestOpenTruncatedAndExtended(t *testing.T) {
	ctx := context.Background()
	s := newSealer(t, newLocalKeyring(t), seal.NewMemoryKeyStore(), seal.Options{})
	b := seal.Binding{OrgID: uuid.New(), ConnectionID: uuid.New(), Purpose: seal.PurposePAT}
	if err := s.EnsureOrgKey(ctx, b.OrgID); err != nil {
		t.Fatal(err)
	}
	sealed := sealOne(t, s, b, "pat-value")
	for n := range len(sealed) {
		_, err := s.Open(ctx, b, sealed[:n])
		requireOpenErr(t, err, fmt.Sprintf("truncated to %d bytes", n))
	}
	_, err := s.Open(ctx, b, nil)
	requireOpenErr(t, err, "nil input")
	_, err = s.Open(ctx, b, append(bytes.Clone(sealed), 0))
	requireOpenErr(t, err, "extra trailing byte")
}

func TestOpenUnknownFormatAndKeyVersion(t *testing.T) {
	ctx := context.Background()
	s := newSealer(t, newLocalKeyring(t), seal.NewMemoryKeyStore(), seal.Options{})
	b := seal.Binding{OrgID: uuid.New(), ConnectionID: uuid.New(), Purpose: seal.PurposePAT}
	if err := s.EnsureOrgKey(ctx, b.OrgID); err != nil {
		t.Fatal(err)
	}
	sealed := sealOne(t, s, b, "pat-value")
	cases := map[string]struct {
		mutate func([]byte)
		reason string
	}{
		"format 0":         {func(x []byte) { x[0] = 0 }, "format version"},
		"format 2":         {func(x []byte) { x[0] = 2 }, "format version"},
		"key version 0":    {func(x []byte) { copy(x[1:5], []byte{0, 0, 0, 0}) }, "key version"},
		"key version 2":    {func(x []byte) { copy(x[1:5], []byte{0, 0, 0, 2}) }, "key version"},
		"key version huge": {func(x []byte) { copy(x[1:5], []byte{0xFF, 0, 0, 0}) }, "key version"},
	}
	for name, tc := range cases {
		x := bytes.Clone(sealed)
		tc.mutate(x)
		_, err := s.Open(ctx, b, x)
		requireOpenErr(t, err, name)
		if !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: error %q does not mention %q", name, err, tc.reason)
		}
	}
}

func TestInvalidBinding(t *testing.T) {
	ctx := context.Background()
	s := newSealer(t, newLocalKeyring(t), seal.NewMemoryKeyStore(), seal.Options{})
	org := uuid.New()
	if err := s.EnsureOrgKey(ctx, org); err != nil {
		t.Fatal(err)
	}
	good := seal.Binding{OrgID: org, ConnectionID: uuid.New(), Purpose: seal.PurposePAT}
	sealed := sealOne(t, s, good, "x")
	for name, b := range map[string]seal.Binding{
		"nil org":         {ConnectionID: uuid.New(), Purpose: seal.PurposePAT},
		"nil connection":  {OrgID: org, Purpose: seal.PurposePAT},
		"unknown purpose": {OrgID: org, ConnectionID: uuid.New(), Purpose: "oauth-tokens"},
		"empty purpose":   {OrgID: org, ConnectionID: uuid.New()},
	} {
		if _, err := s.Seal(ctx, b, []byte("x")); !errors.Is(err, seal.ErrInvalidBinding) {
			t.Errorf("seal with %s: err = %v, want ErrInvalidBinding", name, err)
		}
		_, err := s.Open(ctx, b, sealed)
		if !errors.Is(err, seal.ErrInvalidBinding) || !errors.Is(err, seal.ErrOpen) {
			t.Errorf("open with %s: err = %v, want ErrInvalidBinding and ErrOpen", name, err)
		}
	}
}

func TestSealWithoutOrgKey(t *testing.T) {
	s := newSealer(t, newLocalKeyring(t), seal.NewMemoryKeyStore(), seal.Options{})
	b := seal.Binding{OrgID: uuid.New(), ConnectionID: uuid.New(), Purpose: seal.PurposePAT}
	if _, err := s.Seal(context.Background(), b, []byte("x")); !errors.Is(err, seal.ErrNoOrgKey) {
		t.Fatalf("seal without org key: %v, want ErrNoOrgKey", err)
	}
}

func TestNewValidatesArguments(t *testing.T) {
	k := newLocalKeyring(t)
	if _, err := seal.New(nil, seal.NewMemoryKeyStore(), seal.Options{}); err == nil {
		t.Error("nil provider accepted")
	}
	if _, err := seal.New(k, nil, seal.Options{}); err == nil {
		t.Error("nil store accepted")
	}
	if _, err := seal.New(k, seal.NewMemoryKeyStore(), seal.Options{CacheTTL: -time.Second}); err == nil {
		t.Error("negative TTL accepted")
	}
}

func TestEnsureOrgKeyIdempotent(t *testing.T) {
	env := newKMSEnv(t)
	ctx := context.Background()
	store := seal.NewMemoryKeyStore()
	s := newSealer(t, env.provider, store, seal.Options{})
	org := uuid.New()
	for range 3 {
		if err := s.EnsureOrgKey(ctx, org); err != nil {
			t.Fatal(err)
		}
	}
	if got := env.server.Calls(kmslocal.OpGenerateDataKey); got != 1 {
		t.Fatalf("GenerateDataKey calls = %d, want 1", got)
	}
	k, err := store.LoadOrgKey(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	if k.Version != 1 || k.KeyID != env.key.ARN {
		t.Fatalf("stored key version %d id %q, want 1 and %q", k.Version, k.KeyID, env.key.ARN)
	}
	// The creator cached the plaintext it generated, so sealing costs no Decrypt.
	sealOne(t, s, seal.Binding{OrgID: org, ConnectionID: uuid.New(), Purpose: seal.PurposePAT}, "x")
	if got := env.server.Calls(kmslocal.OpDecrypt); got != 0 {
		t.Fatalf("Decrypt calls after EnsureOrgKey+Seal = %d, want 0", got)
	}
	if err := s.EnsureOrgKey(ctx, uuid.Nil); err == nil {
		t.Fatal("EnsureOrgKey accepted the nil org id")
	}
}

// TestEnsureOrgKeyRace simulates several API replicas (separate Sealers, separate caches)
// sharing one store, each with many goroutines creating the same org's key at once.
func TestEnsureOrgKeyRace(t *testing.T) {
	env := newKMSEnv(t)
	ctx := context.Background()
	store := seal.NewMemoryKeyStore()
	const replicas, perReplica = 4, 16
	sealers := make([]*seal.Sealer, replicas)
	for i := range sealers {
		sealers[i] = newSealer(t, env.provider, store, seal.Options{})
	}
	org := uuid.New()
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, replicas*perReplica)
	for _, s := range sealers {
		for range perReplica {
			wg.Go(func() {
				<-start
				errs <- s.EnsureOrgKey(ctx, org)
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := env.server.Calls(kmslocal.OpGenerateDataKey); got < 1 || got > replicas {
		t.Fatalf("GenerateDataKey calls = %d, want 1..%d (single-flighted per replica)", got, replicas)
	}
	// Every replica must seal under the one stored key: each opens every other's output.
	b := seal.Binding{OrgID: org, ConnectionID: uuid.New(), Purpose: seal.PurposeOAuthTokens}
	for i, si := range sealers {
		sealed := sealOne(t, si, b, fmt.Sprintf("from-%d", i))
		for j, sj := range sealers {
			got, err := sj.Open(ctx, b, sealed)
			if err != nil || string(got) != fmt.Sprintf("from-%d", i) {
				t.Fatalf("replica %d cannot open replica %d's value: %q, %v", j, i, got, err)
			}
		}
	}
}

func TestKMSProviderDirect(t *testing.T) {
	env := newKMSEnv(t)
	ctx := context.Background()
	org := uuid.New()
	dk, err := env.provider.GenerateDataKey(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	if len(dk.Plaintext) != seal.DataKeySize || len(dk.Wrapped) == 0 {
		t.Fatalf("data key: %d-byte plaintext, %d-byte wrapped", len(dk.Plaintext), len(dk.Wrapped))
	}
	if dk.KeyID != env.key.ARN {
		t.Fatalf("KeyID = %q, want the key ARN %q (not the alias)", dk.KeyID, env.key.ARN)
	}
	got, err := env.provider.Decrypt(ctx, org, dk.Wrapped, dk.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, dk.Plaintext) {
		t.Fatal("Decrypt returned a different key")
	}
	// Encryption context mismatch: the wrapped key of one org presented for another.
	_, err = env.provider.Decrypt(ctx, uuid.New(), dk.Wrapped, dk.KeyID)
	if !errors.Is(err, seal.ErrUnwrap) {
		t.Fatalf("decrypt under another org: %v, want ErrUnwrap", err)
	}
	if !strings.Contains(err.Error(), "InvalidCiphertextException") {
		t.Fatalf("decrypt under another org: %v, want the KMS InvalidCiphertextException in the chain", err)
	}
	// A keyring key id is refused before any call.
	before := env.server.Calls(kmslocal.OpDecrypt)
	if _, err := env.provider.Decrypt(ctx, org, dk.Wrapped, "local:0011223344556677"); !errors.Is(err, seal.ErrUnwrap) {
		t.Fatalf("decrypt with local key id: %v, want ErrUnwrap", err)
	}
	if env.server.Calls(kmslocal.OpDecrypt) != before {
		t.Fatal("a local key id reached KMS")
	}
	// Errors never carry key material.
	for _, b := range [][]byte{dk.Plaintext, dk.Wrapped} {
		if strings.Contains(err.Error(), fmt.Sprintf("%x", b)) || strings.Contains(err.Error(), string(b)) {
			t.Fatal("error string contains key material")
		}
	}
}

func TestKMSProviderUnknownKey(t *testing.T) {
	env := newKMSEnv(t)
	p, err := seal.NewKMSProvider(context.Background(), seal.KMSConfig{
		KeyID:           "alias/does-not-exist",
		Region:          "us-east-1",
		Endpoint:        env.endpoint,
		AccessKeyID:     "AKIDTEST",
		SecretAccessKey: "test-secret",
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.GenerateDataKey(context.Background(), uuid.New())
	if err == nil || !strings.Contains(err.Error(), "NotFoundException") {
		t.Fatalf("GenerateDataKey with unknown alias: %v, want NotFoundException", err)
	}
}

func TestNewKMSProviderValidation(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]seal.KMSConfig{
		"no key":      {Region: "us-east-1"},
		"local key":   {KeyID: "local:abcd", Region: "us-east-1"},
		"half static": {KeyID: "alias/x", Region: "us-east-1", AccessKeyID: "AKID"},
	} {
		if _, err := seal.NewKMSProvider(ctx, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestOrgKeySwapRejectedByKMS shows the data key is bound to its org by KMS itself: if the
// store hands back another org's wrapped key (a db bug or tampering), unwrapping fails instead
// of two orgs sharing a key.
func TestOrgKeySwapRejectedByKMS(t *testing.T) {
	env := newKMSEnv(t)
	ctx := context.Background()
	store := seal.NewMemoryKeyStore()
	creator := newSealer(t, env.provider, store, seal.Options{})
	orgA, orgB := uuid.New(), uuid.New()
	for _, o := range []uuid.UUID{orgA, orgB} {
		if err := creator.EnsureOrgKey(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	keyA, err := store.LoadOrgKey(ctx, orgA)
	if err != nil {
		t.Fatal(err)
	}
	store.PutOrgKey(orgB, keyA)
	fresh := newSealer(t, env.provider, store, seal.Options{})
	_, err = fresh.Seal(ctx, seal.Binding{OrgID: orgB, ConnectionID: uuid.New(), Purpose: seal.PurposePAT}, []byte("x"))
	if !errors.Is(err, seal.ErrUnwrap) {
		t.Fatalf("seal with swapped org key: %v, want ErrUnwrap", err)
	}
}

// TestKMSCacheTTL checks through real KMS call counts that unwrapped keys are cached for the
// TTL, re-unwrapped after it, and that a cold burst costs one Decrypt.
func TestKMSCacheTTL(t *testing.T) {
	env := newKMSEnv(t)
	ctx := context.Background()
	store := seal.NewMemoryKeyStore()
	creator := newSealer(t, env.provider, store, seal.Options{})
	org := uuid.New()
	if err := creator.EnsureOrgKey(ctx, org); err != nil {
		t.Fatal(err)
	}
	b := seal.Binding{OrgID: org, ConnectionID: uuid.New(), Purpose: seal.PurposeOAuthTokens}
	sealed := sealOne(t, creator, b, "tokens")

	clock := newFakeClock()
	const ttl = 10 * time.Minute
	s := newSealer(t, env.provider, store, seal.Options{CacheTTL: ttl, Now: clock.Now})
	decrypts := func() int { return env.server.Calls(kmslocal.OpDecrypt) }

	// Cold burst: many concurrent opens, one Decrypt.
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			<-start
			got, err := s.Open(ctx, b, sealed)
			if err == nil && string(got) != "tokens" {
				err = errors.New("wrong plaintext")
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := decrypts(); got != 1 {
		t.Fatalf("Decrypt calls after cold burst = %d, want 1", got)
	}

	// Within the TTL: no more Decrypts.
	clock.Advance(ttl - time.Second)
	for range 10 {
		if _, err := s.Open(ctx, b, sealed); err != nil {
			t.Fatal(err)
		}
		sealOne(t, s, b, "more")
	}
	if got := decrypts(); got != 1 {
		t.Fatalf("Decrypt calls within TTL = %d, want 1", got)
	}

	// At/after the TTL: exactly one re-unwrap, then cached again.
	clock.Advance(time.Second)
	for range 10 {
		if _, err := s.Open(ctx, b, sealed); err != nil {
			t.Fatal(err)
		}
	}
	if got := decrypts(); got != 2 {
		t.Fatalf("Decrypt calls after TTL = %d, want 2", got)
	}

	// Purge forces a re-unwrap too.
	s.Purge()
	if _, err := s.Open(ctx, b, sealed); err != nil {
		t.Fatal(err)
	}
	if got := decrypts(); got != 3 {
		t.Fatalf("Decrypt calls after Purge = %d, want 3", got)
	}
}

// gatedProvider blocks Decrypt until release is closed, to observe single-flight behaviour
// while an unwrap is in progress.
type gatedProvider struct {
	seal.KeyProvider
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	calls   int
}

func (g *gatedProvider) Decrypt(ctx context.Context, org uuid.UUID, wrapped []byte, keyID string) ([]byte, error) {
	g.mu.Lock()
	g.calls++
	g.mu.Unlock()
	g.entered <- struct{}{}
	<-g.release
	return g.KeyProvider.Decrypt(ctx, org, wrapped, keyID)
}

// TestCancelledCallerDoesNotFailSharedUnwrap: the first caller of a shared unwrap giving up
// must not fail the other callers waiting on it.
func TestCancelledCallerDoesNotFailSharedUnwrap(t *testing.T) {
	ctx := context.Background()
	k := newLocalKeyring(t)
	store := seal.NewMemoryKeyStore()
	creator := newSealer(t, k, store, seal.Options{})
	b := seal.Binding{OrgID: uuid.New(), ConnectionID: uuid.New(), Purpose: seal.PurposePAT}
	if err := creator.EnsureOrgKey(ctx, b.OrgID); err != nil {
		t.Fatal(err)
	}
	sealed := sealOne(t, creator, b, "pat")

	g := &gatedProvider{KeyProvider: k, entered: make(chan struct{}, 1), release: make(chan struct{})}
	s := newSealer(t, g, store, seal.Options{})
	firstCtx, cancel := context.WithCancel(ctx)
	firstErr := make(chan error, 1)
	go func() {
		_, err := s.Open(firstCtx, b, sealed)
		firstErr <- err
	}()
	<-g.entered // the unwrap started on behalf of the first caller
	secondDone := make(chan error, 1)
	go func() {
		got, err := s.Open(ctx, b, sealed)
		if err == nil && string(got) != "pat" {
			err = errors.New("wrong plaintext")
		}
		secondDone <- err
	}()
	cancel()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v, want context.Canceled", err)
	}
	close(g.release)
	if err := <-secondDone; err != nil {
		t.Fatalf("second caller: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.calls != 1 {
		t.Fatalf("Decrypt calls = %d, want 1", g.calls)
	}
}

func TestConcurrentManyOrgs(t *testing.T) {
	env := newKMSEnv(t)
	ctx := context.Background()
	store := seal.NewMemoryKeyStore()
	clock := newFakeClock()
	s := newSealer(t, env.provider, store, seal.Options{CacheTTL: time.Minute, Now: clock.Now})
	const orgs, workers, ops = 16, 8, 25
	const step = 100 * time.Millisecond // orgs*workers*ops*step = 320s = 5.3 TTLs
	orgIDs := make([]uuid.UUID, orgs)
	for i := range orgIDs {
		orgIDs[i] = uuid.New()
	}
	var wg sync.WaitGroup
	errs := make(chan error, orgs*workers)
	for _, org := range orgIDs {
		for w := range workers {
			wg.Go(func() {
				if err := s.EnsureOrgKey(ctx, org); err != nil {
					errs <- err
					return
				}
				for i := range ops {
					b := seal.Binding{OrgID: org, ConnectionID: uuid.New(), Purpose: seal.Purposes()[i%4]}
					pt := fmt.Appendf(nil, "%s/%d/%d", org, w, i)
					sealed, err := s.Seal(ctx, b, pt)
					if err != nil {
						errs <- err
						return
					}
					got, err := s.Open(ctx, b, sealed)
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, pt) {
						errs <- fmt.Errorf("org %s: round trip mismatch", org)
						return
					}
					// Every operation moves the clock, so over the run the cache expires about
					// five times and eviction (with zeroing) races with keys in use. A zeroed
					// key used for sealing would make the Open above fail.
					clock.Advance(step)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := env.server.Calls(kmslocal.OpGenerateDataKey); got != orgs {
		t.Fatalf("GenerateDataKey calls = %d, want one per org (%d)", got, orgs)
	}
	if got := env.server.Calls(kmslocal.OpDecrypt); got == 0 {
		t.Fatal("no Decrypt calls: the cache never expired, so eviction was not exercised")
	}
}
