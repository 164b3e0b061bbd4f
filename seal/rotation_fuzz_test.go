package seal_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"testing"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/seal"
)

// FuzzSealedKeyVersion feeds arbitrary bytes to SealedKeyVersion, the header parser the re-seal
// uses to find values under older key versions. It must never panic; what it accepts must carry
// exactly the version in bytes 1-4 and format 1; what it refuses Open refuses too (ErrOpen).
func FuzzSealedKeyVersion(f *testing.F) {
	ctx := context.Background()
	s := newSealer(f, newLocalKeyring(f), seal.NewMemoryKeyStore(), seal.Options{Logger: slog.New(slog.DiscardHandler)})
	b := seal.Binding{OrgID: uuid.New(), ConnectionID: uuid.New(), Purpose: seal.PurposeWebhookSecret}
	if err := s.EnsureOrgKey(ctx, b.OrgID); err != nil {
		f.Fatal(err)
	}
	valid, err := s.Seal(ctx, b, []byte("whsec"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:5])
	f.Add([]byte{1, 0x80, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := seal.SealedKeyVersion(data)
		if err != nil {
			if !errors.Is(err, seal.ErrOpen) {
				t.Fatalf("error %v does not match ErrOpen", err)
			}
			if _, oerr := s.Open(ctx, b, data); !errors.Is(oerr, seal.ErrOpen) {
				t.Fatalf("SealedKeyVersion refused %x but Open said %v", data, oerr)
			}
			return
		}
		if len(data) < 5 || data[0] != 1 || v < 1 || uint32(v) != binary.BigEndian.Uint32(data[1:5]) {
			t.Fatalf("accepted %x as version %d", data, v)
		}
		if _, oerr := s.Open(ctx, b, data); oerr == nil && !bytes.Equal(data, valid) {
			t.Fatalf("forged value opened: %x", data)
		}
	})
}
