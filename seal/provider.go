package seal

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
)

// DataKeySize is the length of a data key in bytes (AES-256).
const DataKeySize = 32

// KeyProvider generates and unwraps per-organization data keys. Implementations must bind the
// wrapped key to orgID (KMS encryption context, keyring associated data) so that a wrapped key
// copied onto another organization's row fails to unwrap; that binding is what makes a database
// mix-up fail closed.
type KeyProvider interface {
	// GenerateDataKey returns a fresh random 32-byte data key for orgID, both in plaintext and
	// wrapped under the provider's master key, and the id of that master key.
	GenerateDataKey(ctx context.Context, orgID uuid.UUID) (DataKey, error)
	// Decrypt unwraps a data key previously produced by GenerateDataKey for the same orgID and
	// keyID. A key that does not belong to orgID, is corrupted or was wrapped under another
	// master key yields an error matching ErrUnwrap.
	Decrypt(ctx context.Context, orgID uuid.UUID, wrapped []byte, keyID string) ([]byte, error)
	// WrapDataKey wraps an existing 32-byte data key of orgID under the provider's current master
	// key, bound to orgID like GenerateDataKey's, and returns the wrapped key and that master
	// key's id. It is how a data key moves to a new master key (KMS_KEY_ID changed, or the
	// keyring's master key was rotated) without changing the data key, and so without touching
	// any value it sealed. It never retains plaintext.
	WrapDataKey(ctx context.Context, orgID uuid.UUID, plaintext []byte) (wrapped []byte, keyID string, err error)
}

// DataKey is a data key as returned by a KeyProvider. Plaintext is secret; every formatting
// path (fmt verbs, slog, JSON) redacts it so it cannot leak through a careless log line.
type DataKey struct {
	Plaintext []byte
	Wrapped   []byte
	KeyID     string
}

const redacted = "[REDACTED]"

// String redacts the plaintext key.
func (k DataKey) String() string {
	return fmt.Sprintf("seal.DataKey{KeyID: %q, Wrapped: %d bytes, Plaintext: %s}", k.KeyID, len(k.Wrapped), redacted)
}

// GoString redacts the plaintext key for %#v.
func (k DataKey) GoString() string { return k.String() }

// Format redacts the plaintext key for every fmt verb, including %x and %v with flags, which
// would otherwise print the struct's fields.
func (k DataKey) Format(f fmt.State, _ rune) { _, _ = fmt.Fprint(f, k.String()) }

// LogValue redacts the plaintext key in slog output.
func (k DataKey) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("key_id", k.KeyID),
		slog.Int("wrapped_len", len(k.Wrapped)),
		slog.String("plaintext", redacted),
	)
}

// MarshalJSON redacts the plaintext key: a DataKey must never be serialized whole (for example
// into a Temporal payload). Only the key id is emitted.
func (k DataKey) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		KeyID     string `json:"key_id"`
		Plaintext string `json:"plaintext"`
	}{k.KeyID, redacted})
}

// zero overwrites b with zeros. It is best effort: copies made by the runtime or by crypto
// libraries (for example an AES key schedule) are out of reach.
func zero(b []byte) {
	clear(b)
}
