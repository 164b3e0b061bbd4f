package seal

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
)

// Key rotation happens in two independent dimensions, and this file holds the cryptographic half
// of both; storing, auditing and scheduling belong to the callers (tenancy, connections,
// activities).
//
//   - Data key rotation: GenerateOrgKey makes a new data key, which the store adds as the org's
//     next version and makes current; from then on Seal uses it, Open still opens every live
//     version, and Reseal moves each stored value to the current version. A version nothing
//     references any more is retired (its wrapped key destroyed).
//   - Master key rotation: Rewrap wraps an existing data key version under the provider's
//     current master key (a new KMS_KEY_ID, or a rotated local keyring). The data key itself
//     does not change, so no sealed value is touched.

// GenerateOrgKey returns a new data key for orgID, wrapped by the provider's current master key,
// for the store to add as the org's next version (Version is left zero). The plaintext is
// discarded at once: the first Seal under the new version unwraps it like any other key.
func (s *Sealer) GenerateOrgKey(ctx context.Context, orgID uuid.UUID) (OrgKey, error) {
	if orgID == uuid.Nil {
		return OrgKey{}, errors.New("generate org data key: org id is nil")
	}
	dk, err := s.provider.GenerateDataKey(ctx, orgID)
	if err != nil {
		return OrgKey{}, fmt.Errorf("generate data key for org %s: %w", orgID, err)
	}
	defer zero(dk.Plaintext)
	if len(dk.Plaintext) != DataKeySize || len(dk.Wrapped) == 0 || dk.KeyID == "" {
		return OrgKey{}, fmt.Errorf("generate data key for org %s: provider returned a %d-byte key", orgID, len(dk.Plaintext))
	}
	return OrgKey{Wrapped: dk.Wrapped, KeyID: dk.KeyID}, nil
}

// Rewrap wraps one stored data key version of orgID under the provider's current master key. It
// unwraps k with the master key that wrapped it (which must still be usable: KMS keeps an old
// key's ciphertexts decryptable until the key is disabled; a local keyring keeps its retired
// master keys), wraps the same 32 bytes again, and checks that the new wrapping unwraps to them
// before returning it, so a re-wrap can never replace a working key with one that does not work.
// changed is false when k is already wrapped by the provider's current master key (nothing to
// store).
func (s *Sealer) Rewrap(ctx context.Context, orgID uuid.UUID, k OrgKey) (next OrgKey, changed bool, err error) {
	if err := k.validate(); err != nil {
		return OrgKey{}, false, fmt.Errorf("rewrap data key version %d of org %s: %w", k.Version, orgID, err)
	}
	pt, err := s.provider.Decrypt(ctx, orgID, k.Wrapped, k.KeyID)
	if err != nil {
		return OrgKey{}, false, fmt.Errorf("rewrap data key version %d of org %s: unwrap under %s: %w", k.Version, orgID, k.KeyID, err)
	}
	defer zero(pt)
	if len(pt) != DataKeySize {
		return OrgKey{}, false, fmt.Errorf("rewrap data key version %d of org %s: provider returned %d bytes", k.Version, orgID, len(pt))
	}
	wrapped, keyID, err := s.provider.WrapDataKey(ctx, orgID, pt)
	if err != nil {
		return OrgKey{}, false, fmt.Errorf("rewrap data key version %d of org %s: %w", k.Version, orgID, err)
	}
	if keyID == k.KeyID {
		return k, false, nil
	}
	check, err := s.provider.Decrypt(ctx, orgID, wrapped, keyID)
	if err != nil {
		return OrgKey{}, false, fmt.Errorf("rewrap data key version %d of org %s: the new wrapping under %s does not unwrap: %w", k.Version, orgID, keyID, err)
	}
	same := subtle.ConstantTimeCompare(check, pt) == 1
	zero(check)
	if !same {
		return OrgKey{}, false, fmt.Errorf("rewrap data key version %d of org %s: the new wrapping under %s unwraps to another key", k.Version, orgID, keyID)
	}
	s.log.InfoContext(ctx, "re-wrapped org data key", slog.String("org_id", orgID.String()),
		slog.Int("key_version", int(k.Version)), slog.String("from_key_id", k.KeyID), slog.String("to_key_id", keyID))
	return OrgKey{Wrapped: wrapped, KeyID: keyID, Version: k.Version}, true, nil
}

// Reseal returns sealed re-sealed for the same binding under the org's current key version, or
// sealed itself with changed=false when it already is (or names a newer version than this Sealer
// believes current: versions only grow, so the belief is stale and the value is left alone). It
// opens the value first, so bytes that do not open (ErrOpen) are never replaced, and it never
// retains plaintext.
func (s *Sealer) Reseal(ctx context.Context, b Binding, sealed []byte) (out []byte, changed bool, err error) {
	from, err := SealedKeyVersion(sealed)
	if err != nil {
		return nil, false, fmt.Errorf("reseal %s for connection %s: %w", b.Purpose, b.ConnectionID, err)
	}
	current, err := s.currentVersion(ctx, b.OrgID)
	if err != nil {
		return nil, false, fmt.Errorf("reseal %s for connection %s: %w", b.Purpose, b.ConnectionID, err)
	}
	if from >= current {
		return sealed, false, nil
	}
	pt, err := s.Open(ctx, b, sealed)
	if err != nil {
		return nil, false, fmt.Errorf("reseal: %w", err)
	}
	defer zero(pt)
	out, err = s.Seal(ctx, b, pt)
	if err != nil {
		return nil, false, fmt.Errorf("reseal: %w", err)
	}
	return out, true, nil
}

// CurrentVersion is the org's key version new values are sealed under, as this Sealer sees it
// (at most CacheTTL old).
func (s *Sealer) CurrentVersion(ctx context.Context, orgID uuid.UUID) (int32, error) {
	return s.currentVersion(ctx, orgID)
}
