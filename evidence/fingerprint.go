package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
)

// fingerprintVersion is written into every fingerprint preimage. It separates this scheme's hashes
// from any future scheme's: if the preimage layout ever has to change, bumping it guarantees that
// no old and new fingerprint can collide by accident.
const fingerprintVersion = 1

// CanonicalPayload returns the canonical JSON encoding of p (see Canonicalize). These are the
// bytes fingerprinted and the bytes to store; after validation a payload has exactly one encoding.
func CanonicalPayload(p Payload) ([]byte, error) {
	if p == nil {
		return nil, fmt.Errorf("evidence: nil payload")
	}
	var v validator
	p.validate(&v, "payload")
	if err := v.err(); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("evidence: encode %s payload: %w", p.EvidenceType(), err)
	}
	return Canonicalize(raw)
}

// DecodePayload decodes a stored payload of type t. It is strict, because a payload that decodes
// loosely could re-encode differently and no longer match its fingerprint: unknown fields,
// duplicate keys and non-integer numbers are rejected, the result must validate, and it must
// re-encode to exactly the canonical form of data.
func DecodePayload(t Type, data []byte) (Payload, error) {
	canon, err := Canonicalize(data)
	if err != nil {
		return nil, fmt.Errorf("evidence: decode %s payload: %w", t, err)
	}
	var p Payload
	switch t {
	case TypeProjectInventory:
		p, err = decodeStrict[ProjectInventory](canon)
	case TypeTicketVolume:
		p, err = decodeStrict[TicketVolume](canon)
	case TypeResolvedSecurityTicket:
		p, err = decodeStrict[ResolvedSecurityTicket](canon)
	case TypeSecurityTicketSample:
		p, err = decodeStrict[SecurityTicketSample](canon)
	case TypeSecurityRemediation:
		p, err = decodeStrict[SecurityRemediation](canon)
	default:
		return nil, fmt.Errorf("evidence: decode payload: unknown evidence type %q", t)
	}
	if err != nil {
		return nil, fmt.Errorf("evidence: decode %s payload: %w", t, err)
	}
	again, err := CanonicalPayload(p)
	if err != nil {
		return nil, fmt.Errorf("evidence: decode %s payload: %w", t, err)
	}
	if !bytes.Equal(again, canon) {
		return nil, fmt.Errorf("evidence: decode %s payload: fields are missing or not in canonical form", t)
	}
	return p, nil
}

func decodeStrict[P Payload](data []byte) (P, error) {
	var p P
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&p)
	return p, err
}

// FingerprintInput returns the exact bytes that Fingerprint hashes: the canonical JSON object
//
//	{"connection_id":…,"payload":…,"subject":…,"type":…,"v":1}
//
// It is exported so that an auditor can be shown what a fingerprint commits to. Provenance is
// deliberately absent (see Provenance). The connection id is present because the same ticket seen
// through two connections is two pieces of evidence, each vouched for by its own credential.
func FingerprintInput(connectionID uuid.UUID, item Item) ([]byte, error) {
	var v validator
	if connectionID == uuid.Nil {
		v.add("connection_id", "is required")
	}
	item.validateContent(&v)
	if err := v.err(); err != nil {
		return nil, err
	}
	payload, err := CanonicalPayload(item.Payload)
	if err != nil {
		return nil, err
	}
	envelope := struct {
		ConnectionID string          `json:"connection_id"`
		Payload      json.RawMessage `json:"payload"`
		Subject      string          `json:"subject"`
		Type         Type            `json:"type"`
		Version      int             `json:"v"`
	}{connectionID.String(), payload, item.Subject, item.Type, fingerprintVersion}
	raw, err := json.Marshal(envelope)
	if err != nil {
		return nil, fmt.Errorf("evidence: encode fingerprint input: %w", err)
	}
	// Re-canonicalise the whole envelope: encoding/json escapes '<', '>' and '&' and would leave
	// the envelope in struct order; the canonical form fixes both.
	return Canonicalize(raw)
}

// Fingerprint returns the lower-case hex sha256 of FingerprintInput(connectionID, item). It is
// stable across map ordering, whitespace, time zones and provenance, and changes with any change
// to the type, connection, subject or payload.
func Fingerprint(connectionID uuid.UUID, item Item) (string, error) {
	in, err := FingerprintInput(connectionID, item)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(in)
	return hex.EncodeToString(sum[:]), nil
}
