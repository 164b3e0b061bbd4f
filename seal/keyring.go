package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/google/uuid"
)

// LocalKeyringFile is the name of the master key file inside the keyring's data directory.
const LocalKeyringFile = "seal-master.key"

const (
	masterKeySize = 32
	// keyringFormatV1 is the first byte of every data key wrapped by a LocalKeyring, so the
	// wrapping can change later without ambiguity.
	keyringFormatV1 = 1
	// keyringAADLabel domain-separates keyring wrapping from every other use of AES-GCM here.
	keyringAADLabel = "jiraconnect/seal/local-keyring/v1"
	// keyringIDLabel domain-separates the key fingerprint from any other hash of the key.
	keyringIDLabel = "jiraconnect/seal/local-keyring/key-id"
)

var (
	// ErrInsecureKeyFile reports a master key file readable or writable by group or others.
	// The keyring refuses it rather than "fixing" the mode, because a file that was exposed
	// may already have been copied.
	ErrInsecureKeyFile = errors.New("seal: master key file is accessible by group or others")
	// ErrInvalidKeyFile reports a master key file that is not a regular file of exactly 32 bytes.
	ErrInvalidKeyFile = errors.New("seal: master key file is invalid")
)

// LocalKeyring is the dev-stack KeyProvider: data keys are wrapped with AES-256-GCM under a
// 32-byte master key kept in a file, with the org id in the associated data so a wrapped key
// only unwraps for the org it was generated for. It offers none of KMS's guarantees (the master
// key sits on disk next to the database), which is why production uses [KMSProvider].
type LocalKeyring struct {
	master []byte
	keyID  string
	// dir is the keyring's directory, absolute, named when a key from another keyring is met.
	dir string
}

// OpenLocalKeyring loads the master key from dataDir/seal-master.key, creating the directory
// (0700) and a new random key file (0600) if the file does not exist. An existing file with any
// group/other permission bits, or whose length is not 32 bytes, is refused.
func OpenLocalKeyring(dataDir string) (*LocalKeyring, error) {
	if dataDir == "" {
		return nil, errors.New("open local keyring: data dir is empty")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open local keyring: create data dir: %w", err)
	}
	path := filepath.Join(dataDir, LocalKeyringFile)
	master, err := readMasterKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createMasterKey(dataDir, path); err != nil {
			return nil, fmt.Errorf("open local keyring: create master key %s: %w", path, err)
		}
		master, err = readMasterKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open local keyring: read master key %s: %w", path, err)
	}
	k := newLocalKeyring(master)
	if k.dir, err = filepath.Abs(dataDir); err != nil {
		k.dir = dataDir
	}
	return k, nil
}

func newLocalKeyring(master []byte) *LocalKeyring {
	h := sha256.New()
	h.Write([]byte(keyringIDLabel))
	h.Write(master)
	return &LocalKeyring{master: master, keyID: "local:" + hex.EncodeToString(h.Sum(nil)[:8])}
}

// readMasterKey checks permissions on the opened descriptor, not the path, so the file that is
// checked is the file that is read.
func readMasterKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", ErrInvalidKeyFile)
	}
	// Windows has no meaningful Unix permission bits; the dev stack there relies on the
	// directory ACLs.
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: mode %v, want 0600", ErrInsecureKeyFile, st.Mode().Perm())
	}
	// Read one byte more than needed so an over-long file is detected without trusting Stat.
	buf := make([]byte, masterKeySize+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		zero(buf)
		return nil, err
	}
	if n != masterKeySize {
		zero(buf)
		return nil, fmt.Errorf("%w: want exactly %d bytes", ErrInvalidKeyFile, masterKeySize)
	}
	return buf[:masterKeySize], nil
}

// createMasterKey writes a new key to a private temporary file and hard-links it into place.
// Linking fails if the target exists, so two processes starting at once cannot overwrite each
// other's key (a rename would, orphaning whatever the loser already wrapped); the loser simply
// reads the winner's file.
func createMasterKey(dir, path string) error {
	key := make([]byte, masterKeySize)
	defer zero(key)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".seal-master-*.tmp")
	if err != nil {
		return err
	}
	tmpPath := tmp.Name()
	defer os.Remove(tmpPath)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmpPath, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// KeyID returns the keyring's key id, "local:" followed by a truncated SHA-256 fingerprint of
// the master key, so a database restored against a different key file fails with a clear
// mismatch instead of a generic decryption error.
func (k *LocalKeyring) KeyID() string { return k.keyID }

// String identifies the keyring by key id only; the master key is never formatted.
func (k *LocalKeyring) String() string { return fmt.Sprintf("seal.LocalKeyring{KeyID: %q}", k.keyID) }

// GoString redacts like String.
func (k *LocalKeyring) GoString() string { return k.String() }

// Format redacts like String for every fmt verb (without it, %v would print the key bytes).
func (k *LocalKeyring) Format(f fmt.State, _ rune) { _, _ = fmt.Fprint(f, k.String()) }

// LogValue redacts like String.
func (k *LocalKeyring) LogValue() slog.Value { return slog.GroupValue(slog.String("key_id", k.keyID)) }

// GenerateDataKey implements KeyProvider.
func (k *LocalKeyring) GenerateDataKey(ctx context.Context, orgID uuid.UUID) (DataKey, error) {
	if err := ctx.Err(); err != nil {
		return DataKey{}, fmt.Errorf("generate local data key for org %s: %w", orgID, err)
	}
	if orgID == uuid.Nil {
		return DataKey{}, errors.New("generate local data key: org id is nil")
	}
	dk := make([]byte, DataKeySize)
	if _, err := rand.Read(dk); err != nil {
		return DataKey{}, fmt.Errorf("generate local data key for org %s: %w", orgID, err)
	}
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		zero(dk)
		return DataKey{}, fmt.Errorf("generate local data key for org %s: nonce: %w", orgID, err)
	}
	aead, err := newGCM(k.master)
	if err != nil {
		zero(dk)
		return DataKey{}, fmt.Errorf("generate local data key for org %s: %w", orgID, err)
	}
	out := make([]byte, 0, 1+len(nonce)+len(dk)+aead.Overhead())
	out = append(out, keyringFormatV1)
	out = append(out, nonce...)
	out = aead.Seal(out, nonce, dk, k.aad(orgID))
	return DataKey{Plaintext: dk, Wrapped: out, KeyID: k.keyID}, nil
}

// Decrypt implements KeyProvider.
func (k *LocalKeyring) Decrypt(ctx context.Context, orgID uuid.UUID, wrapped []byte, keyID string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("unwrap local data key for org %s: %w", orgID, err)
	}
	if keyID != k.keyID {
		return nil, fmt.Errorf("unwrap local data key for org %s: %w: it was wrapped by the local master key %q, but the keyring in %s "+
			"(LOCAL_KEYRING_DIR) holds %q: every process of one database must use the same keyring directory "+
			"(the dev stack prints the one it uses when it starts)", orgID, ErrUnwrap, keyID, k.location(), k.keyID)
	}
	const nonceSize = 12
	aead, err := newGCM(k.master)
	if err != nil {
		return nil, fmt.Errorf("unwrap local data key for org %s: %w", orgID, err)
	}
	if len(wrapped) < 1+nonceSize+aead.Overhead() || wrapped[0] != keyringFormatV1 {
		return nil, fmt.Errorf("unwrap local data key for org %s: %w: malformed wrapped key", orgID, ErrUnwrap)
	}
	dk, err := aead.Open(nil, wrapped[1:1+nonceSize], wrapped[1+nonceSize:], k.aad(orgID))
	if err != nil {
		return nil, fmt.Errorf("unwrap local data key for org %s: %w: authentication failed", orgID, ErrUnwrap)
	}
	if len(dk) != DataKeySize {
		zero(dk)
		return nil, fmt.Errorf("unwrap local data key for org %s: %w: unexpected key length", orgID, ErrUnwrap)
	}
	return dk, nil
}

// location names the keyring's directory for error messages.
func (k *LocalKeyring) location() string {
	if k.dir == "" {
		return "this process's keyring"
	}
	return k.dir
}

// Dir is the keyring's directory (absolute).
func (k *LocalKeyring) Dir() string { return k.dir }

// aad binds a wrapped key to this master key's id and to the org.
func (k *LocalKeyring) aad(orgID uuid.UUID) []byte {
	var b []byte
	b = appendLP(b, []byte(keyringAADLabel))
	b = appendLP(b, []byte(k.keyID))
	b = appendLP(b, orgID[:])
	return b
}

// appendLP appends a 4-byte big-endian length followed by v. Length-prefixing every field makes
// the encoding injective: no two different field tuples produce the same bytes.
func appendLP(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("init aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("init gcm: %w", err)
	}
	return aead, nil
}
