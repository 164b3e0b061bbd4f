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
	"strings"

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
	// retired are the keyring's earlier master keys by key id: they unwrap the data keys they
	// wrapped until those are re-wrapped under the current one, and wrap nothing new.
	retired map[string][]byte
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
	if k.retired, err = readRetiredMasterKeys(dataDir); err != nil {
		return nil, fmt.Errorf("open local keyring: %w", err)
	}
	return k, nil
}

// retiredKeyPattern matches the files of retired master keys: seal-master.<fingerprint>.retired,
// the fingerprint being the hex part of the key's id.
const retiredKeyPattern = "seal-master.*.retired"

func retiredKeyFile(dataDir, keyID string) string {
	return filepath.Join(dataDir, "seal-master."+strings.TrimPrefix(keyID, "local:")+".retired")
}

// readRetiredMasterKeys loads every retired master key in dataDir, checking each like the current
// one and checking that its file is named after its fingerprint.
func readRetiredMasterKeys(dataDir string) (map[string][]byte, error) {
	paths, err := filepath.Glob(filepath.Join(dataDir, retiredKeyPattern))
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(paths))
	for _, path := range paths {
		master, err := readMasterKey(path)
		if err != nil {
			return nil, fmt.Errorf("read retired master key %s: %w", path, err)
		}
		id := newLocalKeyring(master).keyID
		if retiredKeyFile(dataDir, id) != path {
			zero(master)
			return nil, fmt.Errorf("read retired master key %s: %w: its fingerprint is %s", path, ErrInvalidKeyFile, id)
		}
		out[id] = master
	}
	return out, nil
}

// RotateLocalMasterKey gives the keyring in dataDir a new master key. The current one is kept as
// a retired key (seal-master.<fingerprint>.retired, 0600) that still unwraps the data keys it
// wrapped, so nothing becomes unreadable; a re-wrap (jiraconnect keys rewrap-data-keys) then moves
// every data key to the new master key, after which the retired file may be deleted. Processes
// read the keyring when they start: restart them all before the re-wrap, or the ones still
// running keep wrapping new data keys under the old master key (which stays readable). It returns
// the old and new key ids.
func RotateLocalMasterKey(dataDir string) (oldID, newID string, err error) {
	path := filepath.Join(dataDir, LocalKeyringFile)
	master, err := readMasterKey(path)
	if err != nil {
		return "", "", fmt.Errorf("rotate local master key: read %s: %w", path, err)
	}
	oldID = newLocalKeyring(master).keyID
	zero(master)
	// A hard link keeps the retired key's bytes without copying them through memory again; an
	// existing link of the same name is the same key (the name is its fingerprint).
	if err := os.Link(path, retiredKeyFile(dataDir, oldID)); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", "", fmt.Errorf("rotate local master key: keep %s as retired: %w", oldID, err)
	}
	if err := replaceMasterKey(dataDir, path); err != nil {
		return "", "", fmt.Errorf("rotate local master key: %w", err)
	}
	master, err = readMasterKey(path)
	if err != nil {
		return "", "", fmt.Errorf("rotate local master key: read the new key: %w", err)
	}
	defer zero(master)
	return oldID, newLocalKeyring(master).keyID, nil
}

// replaceMasterKey writes a new random key to a private temporary file and renames it over path.
// The previous key must already be kept elsewhere (RotateLocalMasterKey links it first).
func replaceMasterKey(dir, path string) error {
	tmpPath, err := writeTempMasterKey(dir)
	if err != nil {
		return err
	}
	defer os.Remove(tmpPath)
	return os.Rename(tmpPath, path)
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
	tmpPath, err := writeTempMasterKey(dir)
	if err != nil {
		return err
	}
	defer os.Remove(tmpPath)
	if err := os.Link(tmpPath, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// writeTempMasterKey writes a new random master key to a private (0600) temporary file in dir,
// synced, and returns its path.
func writeTempMasterKey(dir string) (string, error) {
	key := make([]byte, masterKeySize)
	defer zero(key)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generate: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".seal-master-*.tmp")
	if err != nil {
		return "", err
	}
	tmpPath := tmp.Name()
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(key)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmpPath)
		return "", err
	}
	return tmpPath, nil
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
	wrapped, err := k.wrap(orgID, dk)
	if err != nil {
		zero(dk)
		return DataKey{}, fmt.Errorf("generate local data key for org %s: %w", orgID, err)
	}
	return DataKey{Plaintext: dk, Wrapped: wrapped, KeyID: k.keyID}, nil
}

// WrapDataKey implements KeyProvider: it wraps plaintext under the current master key.
func (k *LocalKeyring) WrapDataKey(ctx context.Context, orgID uuid.UUID, plaintext []byte) ([]byte, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("wrap local data key for org %s: %w", orgID, err)
	}
	if orgID == uuid.Nil {
		return nil, "", errors.New("wrap local data key: org id is nil")
	}
	if len(plaintext) != DataKeySize {
		return nil, "", fmt.Errorf("wrap local data key for org %s: key is %d bytes, want %d", orgID, len(plaintext), DataKeySize)
	}
	wrapped, err := k.wrap(orgID, plaintext)
	if err != nil {
		return nil, "", fmt.Errorf("wrap local data key for org %s: %w", orgID, err)
	}
	return wrapped, k.keyID, nil
}

// wrap seals dk under the current master key: format byte, nonce, AES-256-GCM with the master
// key's id and the org as associated data.
func (k *LocalKeyring) wrap(orgID uuid.UUID, dk []byte) ([]byte, error) {
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	aead, err := newGCM(k.master)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+len(nonce)+len(dk)+aead.Overhead())
	out = append(out, keyringFormatV1)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, dk, keyringAAD(k.keyID, orgID)), nil
}

// Decrypt implements KeyProvider. It unwraps keys wrapped by the current master key or by a
// retired one still kept in the keyring.
func (k *LocalKeyring) Decrypt(ctx context.Context, orgID uuid.UUID, wrapped []byte, keyID string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("unwrap local data key for org %s: %w", orgID, err)
	}
	master := k.master
	if keyID != k.keyID {
		var ok bool
		if master, ok = k.retired[keyID]; !ok {
			return nil, fmt.Errorf("unwrap local data key for org %s: %w: it was wrapped by the local master key %q, but the keyring in %s "+
				"(LOCAL_KEYRING_DIR) holds %q: every process of one database must use the same keyring directory "+
				"(the dev stack prints the one it uses when it starts)", orgID, ErrUnwrap, keyID, k.location(), k.keyID)
		}
	}
	const nonceSize = 12
	aead, err := newGCM(master)
	if err != nil {
		return nil, fmt.Errorf("unwrap local data key for org %s: %w", orgID, err)
	}
	if len(wrapped) < 1+nonceSize+aead.Overhead() || wrapped[0] != keyringFormatV1 {
		return nil, fmt.Errorf("unwrap local data key for org %s: %w: malformed wrapped key", orgID, ErrUnwrap)
	}
	dk, err := aead.Open(nil, wrapped[1:1+nonceSize], wrapped[1+nonceSize:], keyringAAD(keyID, orgID))
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

// keyringAAD binds a wrapped key to the id of the master key that wrapped it and to the org.
func keyringAAD(keyID string, orgID uuid.UUID) []byte {
	var b []byte
	b = appendLP(b, []byte(keyringAADLabel))
	b = appendLP(b, []byte(keyID))
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
