package seal_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/seal"
)

func TestLocalKeyringCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	k, err := seal.OpenLocalKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, seal.LocalKeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Fatalf("key file mode %v size %d, want 0600 and 32", st.Mode().Perm(), st.Size())
	}
	dst, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm()&0o077 != 0 {
		t.Fatalf("data dir mode %v is accessible by group/others", dst.Mode().Perm())
	}
	if !strings.HasPrefix(k.KeyID(), "local:") || len(k.KeyID()) != len("local:")+16 {
		t.Fatalf("key id %q, want local:<16 hex>", k.KeyID())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("data dir has %d entries, want only the key file (temp file left behind?)", len(entries))
	}

	// Reopening uses the same key: a data key wrapped before still unwraps.
	ctx := context.Background()
	org := uuid.New()
	dk, err := k.GenerateDataKey(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := seal.OpenLocalKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k2.KeyID() != k.KeyID() {
		t.Fatalf("reopened key id %q != %q", k2.KeyID(), k.KeyID())
	}
	got, err := k2.Decrypt(ctx, org, dk.Wrapped, dk.KeyID)
	if err != nil || !bytes.Equal(got, dk.Plaintext) {
		t.Fatalf("reopened keyring cannot unwrap: %v", err)
	}
}

func TestLocalKeyringRefusesBadFiles(t *testing.T) {
	write := func(t *testing.T, content []byte, mode os.FileMode) string {
		dir := t.TempDir()
		path := filepath.Join(dir, seal.LocalKeyringFile)
		if err := os.WriteFile(path, content, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is filtered by umask
			t.Fatal(err)
		}
		return dir
	}
	key := bytes.Repeat([]byte{7}, 32)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		dir := write(t, key, mode)
		_, err := seal.OpenLocalKeyring(dir)
		if !errors.Is(err, seal.ErrInsecureKeyFile) {
			t.Errorf("mode %v: err = %v, want ErrInsecureKeyFile", mode, err)
		}
		// The file is left alone: refusing must not silently "repair" it.
		if st, _ := os.Stat(filepath.Join(dir, seal.LocalKeyringFile)); st.Mode().Perm() != mode {
			t.Errorf("mode %v changed to %v", mode, st.Mode().Perm())
		}
	}
	for _, n := range []int{0, 1, 31, 33, 64} {
		_, err := seal.OpenLocalKeyring(write(t, bytes.Repeat([]byte{7}, n), 0o600))
		if !errors.Is(err, seal.ErrInvalidKeyFile) {
			t.Errorf("%d-byte file: err = %v, want ErrInvalidKeyFile", n, err)
		}
	}
	// A directory in place of the key file.
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, seal.LocalKeyringFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := seal.OpenLocalKeyring(dir); !errors.Is(err, seal.ErrInvalidKeyFile) {
		t.Errorf("directory as key file: err = %v, want ErrInvalidKeyFile", err)
	}
	if _, err := seal.OpenLocalKeyring(""); err == nil {
		t.Error("empty data dir accepted")
	}
	// A valid 0600 file of 32 bytes is accepted as is.
	if _, err := seal.OpenLocalKeyring(write(t, key, 0o600)); err != nil {
		t.Errorf("valid file refused: %v", err)
	}
}

func TestLocalKeyringBindsOrgAndKey(t *testing.T) {
	ctx := context.Background()
	k := newLocalKeyring(t)
	other := newLocalKeyring(t)
	org := uuid.New()
	dk, err := k.GenerateDataKey(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	if len(dk.Plaintext) != seal.DataKeySize || dk.KeyID != k.KeyID() {
		t.Fatalf("data key %d bytes, key id %q", len(dk.Plaintext), dk.KeyID)
	}
	if _, err := k.Decrypt(ctx, uuid.New(), dk.Wrapped, dk.KeyID); !errors.Is(err, seal.ErrUnwrap) {
		t.Errorf("other org: err = %v, want ErrUnwrap", err)
	}
	if _, err := other.Decrypt(ctx, org, dk.Wrapped, dk.KeyID); !errors.Is(err, seal.ErrUnwrap) {
		t.Errorf("other keyring: err = %v, want ErrUnwrap", err)
	}
	// Even claiming the other keyring's id, the authentication fails.
	if _, err := other.Decrypt(ctx, org, dk.Wrapped, other.KeyID()); !errors.Is(err, seal.ErrUnwrap) {
		t.Errorf("other keyring with its own id: err = %v, want ErrUnwrap", err)
	}
	for i := range dk.Wrapped {
		w := bytes.Clone(dk.Wrapped)
		w[i] ^= 0x10
		if _, err := k.Decrypt(ctx, org, w, dk.KeyID); !errors.Is(err, seal.ErrUnwrap) {
			t.Fatalf("wrapped byte %d flipped: err = %v, want ErrUnwrap", i, err)
		}
	}
	for n := range dk.Wrapped {
		if _, err := k.Decrypt(ctx, org, dk.Wrapped[:n], dk.KeyID); !errors.Is(err, seal.ErrUnwrap) {
			t.Fatalf("wrapped truncated to %d: err = %v, want ErrUnwrap", n, err)
		}
	}
	if _, err := k.GenerateDataKey(ctx, uuid.Nil); err == nil {
		t.Error("nil org accepted")
	}
}

// TestDataKeyRedaction checks every way a DataKey might be printed or serialized.
func TestDataKeyRedaction(t *testing.T) {
	dk, err := newLocalKeyring(t).GenerateDataKey(context.Background(), uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		forms[verb] = fmt.Sprintf(verb, dk)
		forms["ptr "+verb] = fmt.Sprintf(verb, &dk)
	}
	js, err := json.Marshal(dk)
	if err != nil {
		t.Fatal(err)
	}
	forms["json"] = string(js)
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("k", "key", dk)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("k", "key", dk)
	forms["slog"] = logBuf.String()
	for name, s := range forms {
		if leaks(s, dk.Plaintext) {
			t.Errorf("%s leaks the plaintext key: %s", name, s)
		}
		if !strings.Contains(s, "REDACTED") {
			t.Errorf("%s does not say it redacted: %s", name, s)
		}
	}
}

// leaks reports whether s contains key in a common encoding (raw, hex, base64, or Go's
// byte-slice formatting of its first bytes).
func leaks(s string, key []byte) bool {
	return strings.Contains(s, string(key)) ||
		strings.Contains(strings.ToLower(s), hex.EncodeToString(key[:8])) ||
		strings.Contains(s, base64.StdEncoding.EncodeToString(key)[:10]) ||
		strings.Contains(s, fmt.Sprint(key[:4])[1:len(fmt.Sprint(key[:4]))-1])
}

// TestLogsNeverContainSecrets runs a full lifecycle with debug logging and checks the log for
// the sealed plaintext and the data key.
func TestLogsNeverContainSecrets(t *testing.T) {
	ctx := context.Background()
	k := newLocalKeyring(t)
	var logBuf bytes.Buffer
	store := seal.NewMemoryKeyStore()
	logger := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newSealer(t, k, store, seal.Options{Logger: logger})
	org := uuid.New()
	if err := s.EnsureOrgKey(ctx, org); err != nil {
		t.Fatal(err)
	}
	b := seal.Binding{OrgID: org, ConnectionID: uuid.New(), Purpose: seal.PurposeAPIToken}
	secret := "ATATT3xFfGF0-very-secret-api-token"
	sealed := sealOne(t, s, b, secret)
	s.Purge()
	if _, err := s.Open(ctx, b, sealed); err != nil {
		t.Fatal(err)
	}
	stored, err := store.LoadOrgKey(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	dataKey, err := k.Decrypt(ctx, org, stored.Wrapped, stored.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	out := logBuf.String()
	if !strings.Contains(out, "created org data key") || !strings.Contains(out, "unwrapped org data key") {
		t.Fatalf("expected lifecycle log lines, got:\n%s", out)
	}
	if strings.Contains(out, secret) || leaks(out, dataKey) {
		t.Fatalf("log contains secret material:\n%s", out)
	}
}

// TestProviderAndConfigRedaction checks that the types holding long-lived secrets (the
// keyring's master key, static AWS credentials) cannot be printed or logged in the clear.
func TestProviderAndConfigRedaction(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k, err := seal.OpenLocalKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	master, err := os.ReadFile(filepath.Join(dir, seal.LocalKeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg := seal.KMSConfig{KeyID: "alias/x", Region: "us-east-1", AccessKeyID: "AKIDVISIBLE",
		SecretAccessKey: "wJalrXUtnFEMI-SECRET", SessionToken: "FwoGZXIvYXdzEJr-TOKEN"}
	var out bytes.Buffer
	for _, v := range []any{k, cfg, &cfg} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(js)
		slog.New(slog.NewJSONHandler(&out, nil)).Info("m", "v", v)
		slog.New(slog.NewTextHandler(&out, nil)).Info("m", "v", v)
	}
	s := out.String()
	if leaks(s, master) {
		t.Errorf("master key leaked:\n%s", s)
	}
	for _, secret := range []string{"SECRET", "TOKEN"} {
		if strings.Contains(s, secret) {
			t.Errorf("%s leaked:\n%s", secret, s)
		}
	}
	if !strings.Contains(s, k.KeyID()) || !strings.Contains(s, "AKIDVISIBLE") {
		t.Errorf("non-secret identifiers should remain visible:\n%s", s)
	}
}

// A process whose LOCAL_KEYRING_DIR is not the keyring an organization was created with is told
// which keyring it has and which key it needs, instead of a bare decryption failure.
func TestKeyringMismatchNamesTheKeyring(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, err := seal.OpenLocalKeyring(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dirB := t.TempDir()
	b, err := seal.OpenLocalKeyring(dirB)
	if err != nil {
		t.Fatal(err)
	}
	org := uuid.New()
	dk, err := a.GenerateDataKey(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Decrypt(ctx, org, dk.Wrapped, dk.KeyID)
	if !errors.Is(err, seal.ErrUnwrap) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{dirB, "LOCAL_KEYRING_DIR", a.KeyID(), b.KeyID()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}
