package jira

import (
	"fmt"
	"log/slog"
)

// redacted is what every rendering of a Secret prints instead of its value.
const redacted = "[REDACTED]"

// Secret holds a credential (access token, refresh token, API token, PAT, client secret).
//
// The value sits behind a pointer so that even reflection-based printing of a struct that holds a
// Secret in an unexported field (where fmt cannot call methods) shows an address, never the
// characters of the credential. Every formatting hook — String, GoString, Format, LogValue,
// MarshalJSON, MarshalText — redacts. The only way to read the value is Reveal, which makes each
// use greppable in review.
//
// The zero Secret is empty.
type Secret struct {
	v *string
}

// NewSecret wraps a credential.
func NewSecret(value string) Secret {
	return Secret{v: &value}
}

// Reveal returns the credential. Call it only at the point where the value leaves the process in
// a request header or body, or is handed to the sealing layer for encryption.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == nil || *s.v == "" }

// Equal reports whether two secrets hold the same value. It exists so that callers never need to
// Reveal two secrets just to compare them.
func (s Secret) Equal(o Secret) bool { return s.Reveal() == o.Reveal() }

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s.IsZero() {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer, used by %#v.
func (s Secret) GoString() string { return "jira.Secret(" + redacted + ")" }

// Format implements fmt.Formatter so that every verb (%s, %v, %+v, %q, %x, %d …) redacts.
func (s Secret) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = f.Write([]byte(s.GoString()))
	case verb == 'q':
		_, _ = fmt.Fprintf(f, "%q", s.String())
	default:
		_, _ = f.Write([]byte(s.String()))
	}
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON implements json.Marshaler. A Secret never round-trips through JSON: code that must
// persist a credential reads it with Reveal and seals it.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalText implements encoding.TextMarshaler (used by encoding/xml, map keys, some loggers).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
