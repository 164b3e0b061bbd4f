package seal_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/seal/kmslocal"
)

// kmsEnv is a kmslocal server on a real HTTP listener plus a KMSProvider that reaches it
// through the unmodified aws-sdk-go-v2 client.
type kmsEnv struct {
	server   *kmslocal.Server
	key      kmslocal.Key
	provider *seal.KMSProvider
	endpoint string
}

// newKMSEnv starts kmslocal with one key behind alias/jiraconnect-test. It isolates the SDK from
// the developer's AWS configuration (so it uses t.Setenv and cannot run in parallel tests).
func newKMSEnv(t testing.TB) *kmsEnv {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-credentials"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	srv := kmslocal.New(kmslocal.Options{})
	key, err := srv.CreateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateAlias("alias/jiraconnect-test", key.ID); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)

	p, err := seal.NewKMSProvider(context.Background(), seal.KMSConfig{
		KeyID:           "alias/jiraconnect-test",
		Region:          "us-east-1",
		Endpoint:        hs.URL,
		AccessKeyID:     "AKIDTEST",
		SecretAccessKey: "test-secret",
	})
	if err != nil {
		t.Fatal(err)
	}
	return &kmsEnv{server: srv, key: key, provider: p, endpoint: hs.URL}
}

func newLocalKeyring(t testing.TB) *seal.LocalKeyring {
	t.Helper()
	k, err := seal.OpenLocalKeyring(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newSealer(t testing.TB, p seal.KeyProvider, store seal.KeyStore, opts seal.Options) *seal.Sealer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := seal.New(p, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testWriter sends log output to t.Log so it only shows for failing or -v runs.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// fakeClock is a manually advanced clock for cache expiry tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
