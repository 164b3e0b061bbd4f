// Package kmslocal is a small in-process stand-in for AWS KMS that speaks the KMS JSON 1.1 wire
// protocol for GenerateDataKey, Encrypt and Decrypt. It exists so tests (and optionally the dev
// stack) can exercise seal.KMSProvider through the unmodified aws-sdk-go-v2 client, including
// the behaviour that matters for security: a ciphertext only decrypts with the encryption
// context it was created with, and fails with the real InvalidCiphertextException otherwise.
//
// It is not a security boundary: master keys live in memory, request signatures are required
// to be present but are not verified, and only symmetric keys exist.
package kmslocal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/google/uuid"
)

// Operation names as they appear after "TrentService." in the X-Amz-Target header.
const (
	OpGenerateDataKey = "GenerateDataKey"
	OpEncrypt         = "Encrypt"
	OpDecrypt         = "Decrypt"
)

const (
	targetPrefix     = "TrentService."
	contentType      = "application/x-amz-json-1.1"
	maxBodyBytes     = 64 << 10
	maxPlaintext     = 4096 // the KMS limit for Encrypt
	blobVersion      = 1
	blobNonceSize    = 12
	blobHeaderSize   = 1 + 16 + blobNonceSize // version, key uuid, nonce
	blobAADLabel     = "jiraconnect/kmslocal/ciphertext/v1"
	symmetricDefault = "SYMMETRIC_DEFAULT"
)

// Options configures a Server.
type Options struct {
	// Region and AccountID are used to build key ARNs; defaults "us-east-1" and "000000000000".
	Region    string
	AccountID string
}

// Key identifies a master key held by the server.
type Key struct {
	ID  string // key id (a UUID)
	ARN string // arn:aws:kms:<region>:<account>:key/<id>
}

// Server is an http.Handler implementing a subset of the KMS API. It is safe for concurrent use.
type Server struct {
	region  string
	account string

	mu       sync.Mutex
	keys     map[uuid.UUID][]byte
	disabled map[uuid.UUID]bool
	aliases  map[string]uuid.UUID // "alias/name" -> key
	calls    map[string]int
}

// New returns a server with no keys.
func New(opts Options) *Server {
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.AccountID == "" {
		opts.AccountID = "000000000000"
	}
	return &Server{
		region:   opts.Region,
		account:  opts.AccountID,
		keys:     make(map[uuid.UUID][]byte),
		disabled: make(map[uuid.UUID]bool),
		aliases:  make(map[string]uuid.UUID),
		calls:    make(map[string]int),
	}
}

// CreateKey adds a new random 256-bit master key.
func (s *Server) CreateKey() (Key, error) {
	material := make([]byte, 32)
	if _, err := rand.Read(material); err != nil {
		return Key{}, fmt.Errorf("create kmslocal key: %w", err)
	}
	return s.ImportKey(uuid.New(), material)
}

// ImportKey adds a master key with the given id and 32 bytes of material, so a dev stack can
// persist its keys across restarts. The material is copied.
func (s *Server) ImportKey(id uuid.UUID, material []byte) (Key, error) {
	if id == uuid.Nil {
		return Key{}, errors.New("import kmslocal key: id is nil")
	}
	if len(material) != 32 {
		return Key{}, fmt.Errorf("import kmslocal key %s: material is %d bytes, want 32", id, len(material))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[id]; ok {
		return Key{}, fmt.Errorf("import kmslocal key %s: already exists", id)
	}
	s.keys[id] = slices.Clone(material)
	return Key{ID: id.String(), ARN: s.keyARN(id)}, nil
}

// CreateAlias points alias (which must start with "alias/") at an existing key.
func (s *Server) CreateAlias(alias, keyID string) error {
	if !strings.HasPrefix(alias, "alias/") || len(alias) == len("alias/") {
		return fmt.Errorf("create kmslocal alias %q: must be alias/<name>", alias)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.resolveLocked(keyID)
	if !ok {
		return fmt.Errorf("create kmslocal alias %q: key %q not found", alias, keyID)
	}
	if _, exists := s.aliases[alias]; exists {
		return fmt.Errorf("create kmslocal alias %q: already exists", alias)
	}
	s.aliases[alias] = id
	return nil
}

// DisableKey disables a key (any identifier form), as an operator does with an old master key
// once nothing depends on it: every later operation with it fails with DisabledException, as in
// KMS. EnableKey undoes it.
func (s *Server) DisableKey(keyID string) error { return s.setDisabled(keyID, true) }

// EnableKey re-enables a key disabled by DisableKey.
func (s *Server) EnableKey(keyID string) error { return s.setDisabled(keyID, false) }

func (s *Server) setDisabled(keyID string, disabled bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.resolveLocked(keyID)
	if !ok {
		return fmt.Errorf("kmslocal key %q not found", keyID)
	}
	s.disabled[id] = disabled
	return nil
}

// Calls returns how many requests for op (e.g. OpDecrypt) the server has received, successful
// or not.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *Server) isDisabled(id uuid.UUID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.disabled[id]
}

func (s *Server) keyARN(id uuid.UUID) string {
	return fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", s.region, s.account, id)
}

// resolveLocked maps any KMS key identifier form (key id, key ARN, alias name, alias ARN) to a
// key held by this server.
func (s *Server) resolveLocked(ref string) (uuid.UUID, bool) {
	arnPrefix := fmt.Sprintf("arn:aws:kms:%s:%s:", s.region, s.account)
	if strings.HasPrefix(ref, "arn:") {
		rest, ok := strings.CutPrefix(ref, arnPrefix)
		if !ok {
			return uuid.Nil, false
		}
		ref = rest
	}
	if strings.HasPrefix(ref, "alias/") {
		id, ok := s.aliases[ref]
		return id, ok
	}
	ref = strings.TrimPrefix(ref, "key/")
	id, err := uuid.Parse(ref)
	if err != nil || id.String() != ref {
		return uuid.Nil, false
	}
	_, ok := s.keys[id]
	return id, ok
}

// apiError is a KMS error response: HTTP status plus the JSON body the SDK decodes into a
// typed error via "__type".
type apiError struct {
	status  int
	typ     string
	message string
}

func (e *apiError) Error() string { return e.typ + ": " + e.message }

func clientErr(typ, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: typ, message: fmt.Sprintf(format, args...)}
}

// ServeHTTP implements the KMS JSON 1.1 protocol: POST with X-Amz-Target
// "TrentService.<Operation>", Content-Type application/x-amz-json-1.1, JSON bodies with blobs
// as standard base64, and errors as {"__type": ..., "message": ...}.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	resp, err := s.serve(r)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-RequestId", uuid.NewString())
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = &apiError{status: http.StatusInternalServerError, typ: "KMSInternalException", message: "internal error"}
		}
		w.WriteHeader(ae.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": ae.typ, "message": ae.message})
		return
	}
	_ = json.NewEncoder(w).Encode(resp)
}

func (s *Server) serve(r *http.Request) (any, error) {
	if r.Method != http.MethodPost {
		return nil, &apiError{status: http.StatusMethodNotAllowed, typ: "UnknownOperationException", message: "only POST is supported"}
	}
	target := r.Header.Get("X-Amz-Target")
	if target == "" {
		return nil, clientErr("UnknownOperationException", "missing X-Amz-Target header")
	}
	op, ok := strings.CutPrefix(target, targetPrefix)
	if !ok || (op != OpGenerateDataKey && op != OpEncrypt && op != OpDecrypt) {
		return nil, clientErr("UnknownOperationException", "unsupported operation %q", target)
	}
	s.mu.Lock()
	s.calls[op]++
	s.mu.Unlock()

	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != contentType {
		return nil, clientErr("SerializationException", "content type must be %s", contentType)
	}
	// Real KMS requires SigV4; requiring the header catches clients that are not signing (no
	// credentials configured) even though the signature itself is not checked.
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		return nil, clientErr("MissingAuthenticationTokenException", "request is not signed with SigV4")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, clientErr("SerializationException", "read body: %v", err)
	}
	if len(body) > maxBodyBytes {
		return nil, clientErr("SerializationException", "body exceeds %d bytes", maxBodyBytes)
	}
	switch op {
	case OpGenerateDataKey:
		var in generateDataKeyInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		return s.generateDataKey(in)
	case OpEncrypt:
		var in encryptInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		return s.encrypt(in)
	default:
		var in decryptInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		return s.decrypt(in)
	}
}

func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return clientErr("SerializationException", "invalid request body: %v", err)
	}
	return nil
}

type generateDataKeyInput struct {
	KeyId             string
	KeySpec           string
	NumberOfBytes     *int
	EncryptionContext map[string]string
}

type generateDataKeyOutput struct {
	CiphertextBlob []byte
	Plaintext      []byte
	KeyId          string
}

type encryptInput struct {
	KeyId               string
	Plaintext           []byte
	EncryptionContext   map[string]string
	EncryptionAlgorithm string
}

type encryptOutput struct {
	CiphertextBlob      []byte
	KeyId               string
	EncryptionAlgorithm string
}

type decryptInput struct {
	CiphertextBlob      []byte
	KeyId               string
	EncryptionContext   map[string]string
	EncryptionAlgorithm string
}

type decryptOutput struct {
	KeyId               string
	Plaintext           []byte
	EncryptionAlgorithm string
}

func (s *Server) generateDataKey(in generateDataKeyInput) (any, error) {
	var n int
	switch {
	case in.KeySpec != "" && in.NumberOfBytes != nil:
		return nil, clientErr("ValidationException", "specify either KeySpec or NumberOfBytes, not both")
	case in.KeySpec == "AES_256":
		n = 32
	case in.KeySpec == "AES_128":
		n = 16
	case in.KeySpec != "":
		return nil, clientErr("ValidationException", "unsupported KeySpec %q", in.KeySpec)
	case in.NumberOfBytes != nil && *in.NumberOfBytes >= 1 && *in.NumberOfBytes <= 1024:
		n = *in.NumberOfBytes
	default:
		return nil, clientErr("ValidationException", "KeySpec or NumberOfBytes (1-1024) is required")
	}
	plaintext := make([]byte, n)
	if _, err := rand.Read(plaintext); err != nil {
		return nil, fmt.Errorf("generate data key: %w", err)
	}
	blob, arn, err := s.seal(in.KeyId, plaintext, in.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return generateDataKeyOutput{CiphertextBlob: blob, Plaintext: plaintext, KeyId: arn}, nil
}

func (s *Server) encrypt(in encryptInput) (any, error) {
	if in.EncryptionAlgorithm != "" && in.EncryptionAlgorithm != symmetricDefault {
		return nil, clientErr("InvalidKeyUsageException", "unsupported EncryptionAlgorithm %q", in.EncryptionAlgorithm)
	}
	if len(in.Plaintext) == 0 || len(in.Plaintext) > maxPlaintext {
		return nil, clientErr("ValidationException", "Plaintext must be 1-%d bytes", maxPlaintext)
	}
	blob, arn, err := s.seal(in.KeyId, in.Plaintext, in.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return encryptOutput{CiphertextBlob: blob, KeyId: arn, EncryptionAlgorithm: symmetricDefault}, nil
}

func (s *Server) decrypt(in decryptInput) (any, error) {
	if in.EncryptionAlgorithm != "" && in.EncryptionAlgorithm != symmetricDefault {
		return nil, clientErr("InvalidKeyUsageException", "unsupported EncryptionAlgorithm %q", in.EncryptionAlgorithm)
	}
	blob := in.CiphertextBlob
	if len(blob) < blobHeaderSize+16 || blob[0] != blobVersion {
		return nil, clientErr("InvalidCiphertextException", "ciphertext is malformed")
	}
	embedded, err := uuid.FromBytes(blob[1:17])
	if err != nil {
		return nil, clientErr("InvalidCiphertextException", "ciphertext is malformed")
	}
	s.mu.Lock()
	material, ok := s.keys[embedded]
	var requested uuid.UUID
	var requestedOK bool
	if in.KeyId != "" {
		requested, requestedOK = s.resolveLocked(in.KeyId)
	}
	s.mu.Unlock()
	if in.KeyId != "" {
		if !requestedOK {
			return nil, clientErr("NotFoundException", "key %q does not exist", in.KeyId)
		}
		if requested != embedded {
			return nil, clientErr("IncorrectKeyException", "the ciphertext was not encrypted under the specified key")
		}
	}
	if !ok {
		return nil, clientErr("InvalidCiphertextException", "ciphertext refers to an unknown key")
	}
	if s.isDisabled(embedded) {
		return nil, clientErr("DisabledException", "%s is disabled", s.keyARN(embedded))
	}
	aead, err := newGCM(material)
	if err != nil {
		return nil, err
	}
	plaintext, err := aead.Open(nil, blob[17:blobHeaderSize], blob[blobHeaderSize:], blobAAD(blob[:17], in.EncryptionContext))
	if err != nil {
		// Real KMS gives no detail here either: a wrong encryption context and a corrupted blob
		// are indistinguishable by design.
		return nil, clientErr("InvalidCiphertextException", "the ciphertext, key or encryption context is invalid")
	}
	return decryptOutput{KeyId: s.keyARN(embedded), Plaintext: plaintext, EncryptionAlgorithm: symmetricDefault}, nil
}

// seal encrypts plaintext under the referenced key. The blob carries the key id (as real KMS
// ciphertexts do, so Decrypt needs no KeyId) and authenticates it together with the canonical
// encryption context.
func (s *Server) seal(keyRef string, plaintext []byte, encCtx map[string]string) ([]byte, string, error) {
	if keyRef == "" {
		return nil, "", clientErr("ValidationException", "KeyId is required")
	}
	s.mu.Lock()
	id, ok := s.resolveLocked(keyRef)
	material := s.keys[id]
	s.mu.Unlock()
	if !ok {
		return nil, "", clientErr("NotFoundException", "key %q does not exist", keyRef)
	}
	if s.isDisabled(id) {
		return nil, "", clientErr("DisabledException", "%s is disabled", s.keyARN(id))
	}
	aead, err := newGCM(material)
	if err != nil {
		return nil, "", err
	}
	blob := make([]byte, blobHeaderSize, blobHeaderSize+len(plaintext)+aead.Overhead())
	blob[0] = blobVersion
	copy(blob[1:17], id[:])
	if _, err := rand.Read(blob[17:blobHeaderSize]); err != nil {
		return nil, "", fmt.Errorf("nonce: %w", err)
	}
	nonce := slices.Clone(blob[17:blobHeaderSize])
	blob = aead.Seal(blob, nonce, plaintext, blobAAD(blob[:17], encCtx))
	return blob, s.keyARN(id), nil
}

// blobAAD encodes the blob's version and key id plus the encryption context, sorted by key and
// length-prefixed, so the encoding is canonical (map order does not matter) and unambiguous.
// A missing and an empty context encode the same, as in KMS.
func blobAAD(prefix []byte, encCtx map[string]string) []byte {
	aad := appendLP(nil, []byte(blobAADLabel))
	aad = appendLP(aad, prefix)
	aad = binary.BigEndian.AppendUint32(aad, uint32(len(encCtx)))
	for _, k := range slices.Sorted(maps.Keys(encCtx)) {
		aad = appendLP(aad, []byte(k))
		aad = appendLP(aad, []byte(encCtx[k]))
	}
	return aad
}

func appendLP(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("init aes: %w", err)
	}
	return cipher.NewGCM(block)
}
