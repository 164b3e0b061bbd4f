package seal_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/seal"
)

// FuzzOpen feeds arbitrary bytes to Open. It must never panic, and anything other than the one
// genuinely sealed value must fail with ErrOpen: with AES-GCM and an authenticated header, no
// mutation of a valid value may open.
func FuzzOpen(f *testing.F) {
	ctx := context.Background()
	// Logs go nowhere: the sealer outlives this function's use of f, and f must not be used
	// from inside the fuzz target.
	s := newSealer(f, newLocalKeyring(f), seal.NewMemoryKeyStore(), seal.Options{Logger: slog.New(slog.DiscardHandler)})
	b := seal.Binding{OrgID: uuid.New(), ConnectionID: uuid.New(), Purpose: seal.PurposeOAuthTokens}
	if err := s.EnsureOrgKey(ctx, b.OrgID); err != nil {
		f.Fatal(err)
	}
	plaintext := []byte(`{"access_token":"a","refresh_token":"r"}`)
	valid, err := s.Seal(ctx, b, plaintext)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(valid[:17])
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add(append([]byte{2}, valid[1:]...))
	f.Add(bytes.Repeat([]byte{0xFF}, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := s.Open(ctx, b, data)
		if bytes.Equal(data, valid) {
			if err != nil || !bytes.Equal(got, plaintext) {
				t.Fatalf("valid value did not open: %v", err)
			}
			return
		}
		if err == nil {
			t.Fatalf("forged value opened: %x", data)
		}
		if !errors.Is(err, seal.ErrOpen) {
			t.Fatalf("error %v does not match ErrOpen", err)
		}
	})
}
