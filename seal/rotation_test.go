package seal_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/seal/kmslocal"
)

// rotate gives org a new current data key version, as tenancy's rotation does, and returns it.
func rotate(t *testing.T, s *seal.Sealer, store *seal.MemoryKeyStore, org uuid.UUID) int32 {
	t.Helper()
	k, err := s.GenerateOrgKey(context.Background(), org)
	require.NoError(t, err)
	stored, err := store.AddOrgKeyVersion(org, k)
	require.NoError(t, err)
	s.ForgetCurrent(org)
	return stored.Version
}

func versionOf(t *testing.T, sealed []byte) int32 {
	t.Helper()
	v, err := seal.SealedKeyVersion(sealed)
	require.NoError(t, err)
	return v
}

// After a rotation, values sealed under every live version open — with this sealer and with a
// cold one, as in another process — new values are sealed under the new version, Reseal moves an
// old value to it and leaves a current one alone, and a retired version's values no longer open.
func TestOlderKeyVersionsOpenAfterRotation(t *testing.T) {
	ctx := context.Background()
	for name, p := range providers(t) {
		t.Run(name, func(t *testing.T) {
			store := seal.NewMemoryKeyStore()
			s := newSealer(t, p, store, seal.Options{})
			org := uuid.New()
			require.NoError(t, s.EnsureOrgKey(ctx, org))
			b := seal.Binding{OrgID: org, ConnectionID: uuid.New(), Purpose: seal.PurposeOAuthTokens}
			v1 := sealOne(t, s, b, "sealed under v1")
			require.Equal(t, int32(1), versionOf(t, v1))

			require.Equal(t, int32(2), rotate(t, s, store, org))
			v2 := sealOne(t, s, b, "sealed under v2")
			require.Equal(t, int32(2), versionOf(t, v2), "Seal uses the current version")
			require.Equal(t, int32(3), rotate(t, s, store, org))

			cold := newSealer(t, p, store, seal.Options{})
			for _, sealer := range []*seal.Sealer{s, cold} {
				got, err := sealer.Open(ctx, b, v1)
				require.NoError(t, err, "a value sealed under version 1 opens while version 3 is current")
				require.Equal(t, "sealed under v1", string(got))
				got, err = sealer.Open(ctx, b, v2)
				require.NoError(t, err)
				require.Equal(t, "sealed under v2", string(got))
			}

			resealed, changed, err := cold.Reseal(ctx, b, v1)
			require.NoError(t, err)
			require.True(t, changed)
			require.Equal(t, int32(3), versionOf(t, resealed))
			got, err := s.Open(ctx, b, resealed)
			require.NoError(t, err)
			require.Equal(t, "sealed under v1", string(got))
			same, changed, err := cold.Reseal(ctx, b, resealed)
			require.NoError(t, err)
			require.False(t, changed, "a value under the current version is left as it is")
			require.Equal(t, resealed, same)

			// Reseal is bound like Open: a value of another connection is never re-sealed.
			other := b
			other.ConnectionID = uuid.New()
			_, _, err = cold.Reseal(ctx, other, v2)
			requireOpenErr(t, err, "reseal under another binding")

			require.NoError(t, store.RetireOrgKeyVersion(org, 1))
			fresh := newSealer(t, p, store, seal.Options{})
			_, err = fresh.Open(ctx, b, v1)
			requireOpenErr(t, err, "a value sealed under a retired version")
			require.ErrorContains(t, err, "retired")
			got, err = fresh.Open(ctx, b, resealed)
			require.NoError(t, err, "the re-sealed value does not need version 1")
			require.Equal(t, "sealed under v1", string(got))
			require.Error(t, store.RetireOrgKeyVersion(org, 3), "the current version cannot be retired")
		})
	}
}

// Keys are cached per version: opening values of two versions costs one KMS Decrypt each, and
// nothing more while cached.
func TestKeyCachePerVersion(t *testing.T) {
	env := newKMSEnv(t)
	ctx := context.Background()
	store := seal.NewMemoryKeyStore()
	creator := newSealer(t, env.provider, store, seal.Options{})
	org := uuid.New()
	require.NoError(t, creator.EnsureOrgKey(ctx, org))
	b := seal.Binding{OrgID: org, ConnectionID: uuid.New(), Purpose: seal.PurposePAT}
	v1 := sealOne(t, creator, b, "one")
	rotate(t, creator, store, org)
	v2 := sealOne(t, creator, b, "two")

	s := newSealer(t, env.provider, store, seal.Options{})
	before := env.server.Calls(kmslocal.OpDecrypt)
	for range 5 {
		for _, v := range [][]byte{v1, v2} {
			_, err := s.Open(ctx, b, v)
			require.NoError(t, err)
		}
	}
	require.Equal(t, 2, env.server.Calls(kmslocal.OpDecrypt)-before, "one Decrypt per version")
}

// Another process's sealer keeps sealing under the version it last saw for at most its cache TTL
// after a rotation (what the re-seal's wait covers); ForgetCurrent switches at once.
func TestCurrentVersionFollowsRotationWithinTTL(t *testing.T) {
	ctx := context.Background()
	k := newLocalKeyring(t)
	store := seal.NewMemoryKeyStore()
	rotator := newSealer(t, k, store, seal.Options{})
	org := uuid.New()
	require.NoError(t, rotator.EnsureOrgKey(ctx, org))
	clock := newFakeClock()
	const ttl = time.Minute
	other := newSealer(t, k, store, seal.Options{CacheTTL: ttl, Now: clock.Now})
	require.Equal(t, ttl, other.CacheTTL())
	b := seal.Binding{OrgID: org, ConnectionID: uuid.New(), Purpose: seal.PurposeAPIToken}
	require.Equal(t, int32(1), versionOf(t, sealOne(t, other, b, "x")))

	rotate(t, rotator, store, org)
	require.Equal(t, int32(2), versionOf(t, sealOne(t, rotator, b, "x")), "the rotating process switches at once")
	clock.Advance(ttl - time.Second)
	require.Equal(t, int32(1), versionOf(t, sealOne(t, other, b, "x")), "within its TTL another process still uses version 1")
	clock.Advance(time.Second)
	require.Equal(t, int32(2), versionOf(t, sealOne(t, other, b, "x")), "after its TTL it uses the new version")

	rotate(t, rotator, store, org)
	other.ForgetCurrent(org)
	v, err := other.CurrentVersion(ctx, org)
	require.NoError(t, err)
	require.Equal(t, int32(3), v)
}

// newKMSProvider returns a provider on env's kmslocal whose current master key is keyID.
func newKMSProvider(t *testing.T, env *kmsEnv, keyID string) *seal.KMSProvider {
	t.Helper()
	p, err := seal.NewKMSProvider(context.Background(), seal.KMSConfig{KeyID: keyID, Region: "us-east-1",
		Endpoint: env.endpoint, AccessKeyID: "AKIDTEST", SecretAccessKey: "test-secret"})
	require.NoError(t, err)
	return p
}

// Replacing the KMS key (KMS_KEY_ID names a new key): a provider configured with the new key still
// opens everything wrapped under the old one, Rewrap moves each version to the new key through
// the real SDK path (Encrypt with the org's encryption context) without changing a sealed value,
// and once every version is re-wrapped the old key can be disabled and everything still opens.
func TestRewrapUnderNewKMSKey(t *testing.T) {
	env := newKMSEnv(t)
	ctx := context.Background()
	store := seal.NewMemoryKeyStore()
	old := newSealer(t, env.provider, store, seal.Options{})
	orgs := []uuid.UUID{uuid.New(), uuid.New()}
	sealed := map[uuid.UUID][][]byte{}
	binding := func(org uuid.UUID) seal.Binding {
		return seal.Binding{OrgID: org, ConnectionID: org, Purpose: seal.PurposeWebhookSecret}
	}
	for _, org := range orgs {
		require.NoError(t, old.EnsureOrgKey(ctx, org))
		sealed[org] = append(sealed[org], sealOne(t, old, binding(org), "v1 "+org.String()))
		rotate(t, old, store, org)
		sealed[org] = append(sealed[org], sealOne(t, old, binding(org), "v2 "+org.String()))
	}

	newKey, err := env.server.CreateKey()
	require.NoError(t, err)
	s := newSealer(t, newKMSProvider(t, env, newKey.ID), store, seal.Options{})
	openAll := func(s *seal.Sealer) {
		t.Helper()
		for _, org := range orgs {
			for i, v := range sealed[org] {
				got, err := s.Open(ctx, binding(org), v)
				require.NoError(t, err)
				require.Equal(t, []string{"v1 ", "v2 "}[i]+org.String(), string(got))
			}
		}
	}
	openAll(s) // the old key still unwraps, through the stored key ARN

	encrypts := env.server.Calls(kmslocal.OpEncrypt)
	for _, org := range orgs {
		for v := int32(1); v <= 2; v++ {
			k, err := store.LoadOrgKeyVersion(ctx, org, v)
			require.NoError(t, err)
			require.Equal(t, env.key.ARN, k.KeyID)
			next, changed, err := s.Rewrap(ctx, org, k)
			require.NoError(t, err)
			require.True(t, changed)
			require.Equal(t, newKey.ARN, next.KeyID, "the key ARN KMS reports, not the configured id")
			require.Equal(t, v, next.Version)
			require.True(t, store.ReplaceOrgKeyWrapping(org, k, next))
			again, changed, err := s.Rewrap(ctx, org, next)
			require.NoError(t, err)
			require.False(t, changed, "a version already under the new key is left alone")
			require.Equal(t, next, again)
		}
	}
	require.Equal(t, 8, env.server.Calls(kmslocal.OpEncrypt)-encrypts, "one Encrypt per re-wrap and per check")

	require.NoError(t, env.server.DisableKey(env.key.ARN))
	openAll(newSealer(t, newKMSProvider(t, env, newKey.ID), store, seal.Options{}))

	// The re-wrapped key is still bound to its org by the encryption context.
	ka, err := store.LoadOrgKey(ctx, orgs[0])
	require.NoError(t, err)
	store.PutOrgKey(orgs[1], ka)
	swapped := newSealer(t, newKMSProvider(t, env, newKey.ID), store, seal.Options{})
	_, err = swapped.Open(ctx, binding(orgs[1]), sealed[orgs[1]][1])
	require.ErrorIs(t, err, seal.ErrUnwrap)
}

// A version wrapped under a disabled (or deleted) master key cannot be re-wrapped, and Rewrap
// says so instead of storing anything.
func TestRewrapNeedsTheOldKey(t *testing.T) {
	env := newKMSEnv(t)
	ctx := context.Background()
	store := seal.NewMemoryKeyStore()
	s := newSealer(t, env.provider, store, seal.Options{})
	org := uuid.New()
	require.NoError(t, s.EnsureOrgKey(ctx, org))
	k, err := store.LoadOrgKey(ctx, org)
	require.NoError(t, err)
	newKey, err := env.server.CreateKey()
	require.NoError(t, err)
	require.NoError(t, env.server.DisableKey(env.key.ID))
	_, changed, err := newSealer(t, newKMSProvider(t, env, newKey.ID), store, seal.Options{}).Rewrap(ctx, org, k)
	require.Error(t, err)
	require.False(t, changed)
	require.Contains(t, err.Error(), "DisabledException")
}

// corruptingProvider wraps keys into bytes that unwrap to another key.
type corruptingProvider struct{ *seal.LocalKeyring }

func (c corruptingProvider) WrapDataKey(ctx context.Context, org uuid.UUID, pt []byte) ([]byte, string, error) {
	other := bytes.Clone(pt)
	other[0] ^= 1
	w, _, err := c.LocalKeyring.WrapDataKey(ctx, org, other)
	return w, "local:other", err
}

func (c corruptingProvider) Decrypt(ctx context.Context, org uuid.UUID, wrapped []byte, keyID string) ([]byte, error) {
	if keyID == "local:other" {
		keyID = c.KeyID()
	}
	return c.LocalKeyring.Decrypt(ctx, org, wrapped, keyID)
}

// Rewrap checks that the new wrapping unwraps to the same key before handing it out.
func TestRewrapVerifiesTheNewWrapping(t *testing.T) {
	ctx := context.Background()
	k := newLocalKeyring(t)
	store := seal.NewMemoryKeyStore()
	org := uuid.New()
	require.NoError(t, newSealer(t, k, store, seal.Options{}).EnsureOrgKey(ctx, org))
	stored, err := store.LoadOrgKey(ctx, org)
	require.NoError(t, err)
	_, changed, err := newSealer(t, corruptingProvider{k}, store, seal.Options{}).Rewrap(ctx, org, stored)
	require.ErrorContains(t, err, "unwraps to another key")
	require.False(t, changed)
}

// Rotating the local keyring's master key keeps the old one as a retired key, so every data key
// still unwraps; a re-wrap moves them to the new master key, after which the retired file can go.
func TestLocalKeyringMasterRotation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k1, err := seal.OpenLocalKeyring(dir)
	require.NoError(t, err)
	store := seal.NewMemoryKeyStore()
	s1 := newSealer(t, k1, store, seal.Options{})
	org := uuid.New()
	require.NoError(t, s1.EnsureOrgKey(ctx, org))
	b := seal.Binding{OrgID: org, ConnectionID: uuid.New(), Purpose: seal.PurposePAT}
	v := sealOne(t, s1, b, "pat")

	oldID, newID, err := seal.RotateLocalMasterKey(dir)
	require.NoError(t, err)
	require.Equal(t, k1.KeyID(), oldID)
	require.NotEqual(t, oldID, newID)
	retiredFile := filepath.Join(dir, "seal-master."+strings.TrimPrefix(oldID, "local:")+".retired")
	st, err := os.Stat(retiredFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	k2, err := seal.OpenLocalKeyring(dir)
	require.NoError(t, err)
	require.Equal(t, newID, k2.KeyID())
	s2 := newSealer(t, k2, store, seal.Options{})
	got, err := s2.Open(ctx, b, v)
	require.NoError(t, err, "the retired master key still unwraps")
	require.Equal(t, "pat", string(got))

	stored, err := store.LoadOrgKey(ctx, org)
	require.NoError(t, err)
	next, changed, err := s2.Rewrap(ctx, org, stored)
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, newID, next.KeyID)
	require.True(t, store.ReplaceOrgKeyWrapping(org, stored, next))

	require.NoError(t, os.Remove(retiredFile))
	k3, err := seal.OpenLocalKeyring(dir)
	require.NoError(t, err)
	got, err = newSealer(t, k3, store, seal.Options{}).Open(ctx, b, v)
	require.NoError(t, err, "after the re-wrap the retired master key is not needed")
	require.Equal(t, "pat", string(got))

	// A retired key file that is not named after its fingerprint is refused.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "seal-master.0000000000000000.retired"), bytes.Repeat([]byte{9}, 32), 0o600))
	_, err = seal.OpenLocalKeyring(dir)
	require.ErrorIs(t, err, seal.ErrInvalidKeyFile)
}

// SealedKeyVersion reads exactly the header Open authenticates.
func TestSealedKeyVersion(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want int32
		err  string
	}{
		{[]byte{1, 0, 0, 0, 7}, 7, ""},
		{[]byte{1, 0x7f, 0xff, 0xff, 0xff}, 1<<31 - 1, ""},
		{[]byte{1, 0, 0, 0}, 0, "truncated"},
		{nil, 0, "truncated"},
		{[]byte{2, 0, 0, 0, 1}, 0, "format version"},
		{[]byte{1, 0, 0, 0, 0}, 0, "key version"},
		{[]byte{1, 0x80, 0, 0, 0}, 0, "key version"},
	} {
		got, err := seal.SealedKeyVersion(tc.in)
		if tc.err == "" {
			assert.NoError(t, err)
			assert.Equal(t, tc.want, got)
			continue
		}
		assert.ErrorIs(t, err, seal.ErrOpen)
		assert.ErrorContains(t, err, tc.err)
		assert.True(t, errors.Is(err, seal.ErrOpen))
	}
}
