package kmslocal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/jiraconnect/jiraconnect/seal/kmslocal"
)

// newClient returns kmslocal on httptest and a real SDK client pointed at it.
func newClient(t *testing.T) (*kmslocal.Server, kmslocal.Key, *kms.Client, string) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	srv := kmslocal.New(kmslocal.Options{Region: "eu-west-1", AccountID: "111122223333"})
	key, err := srv.CreateKey()
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	cfg, err := config.LoadDefaultConfig(context.Background(),
		config.WithRegion("eu-west-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKID", "secret", "")))
	if err != nil {
		t.Fatal(err)
	}
	client := kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(hs.URL) })
	return srv, key, client, hs.URL
}

func TestEncryptDecryptWithContext(t *testing.T) {
	srv, key, client, _ := newClient(t)
	ctx := context.Background()
	if err := srv.CreateAlias("alias/app", key.ID); err != nil {
		t.Fatal(err)
	}
	encCtx := map[string]string{"org_id": "a", "purpose": "test"}
	enc, err := client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/app"), Plaintext: []byte("hello"), EncryptionContext: encCtx})
	if err != nil {
		t.Fatalf("encrypt: %v", err)
	}
	if got := aws.ToString(enc.KeyId); got != key.ARN {
		t.Fatalf("encrypt KeyId = %q, want ARN %q", got, key.ARN)
	}
	if bytes.Contains(enc.CiphertextBlob, []byte("hello")) {
		t.Fatal("ciphertext blob contains the plaintext")
	}

	// Decrypt needs no KeyId (the blob names its key), and any key identifier form works.
	for _, keyID := range []*string{nil, aws.String(key.ID), aws.String(key.ARN), aws.String("alias/app"),
		aws.String("arn:aws:kms:eu-west-1:111122223333:alias/app")} {
		dec, err := client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, KeyId: keyID, EncryptionContext: encCtx})
		if err != nil {
			t.Fatalf("decrypt with KeyId %v: %v", aws.ToString(keyID), err)
		}
		if string(dec.Plaintext) != "hello" || aws.ToString(dec.KeyId) != key.ARN {
			t.Fatalf("decrypt = %q key %q", dec.Plaintext, aws.ToString(dec.KeyId))
		}
	}

	// The encryption context must match exactly: different value, extra pair, missing pair and
	// no context at all are all rejected with the real KMS error type.
	for name, bad := range map[string]map[string]string{
		"other value": {"org_id": "b", "purpose": "test"},
		"extra pair":  {"org_id": "a", "purpose": "test", "x": "y"},
		"missing":     {"org_id": "a"},
		"none":        nil,
	} {
		_, err := client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: bad})
		var ice *types.InvalidCiphertextException
		if !errors.As(err, &ice) {
			t.Errorf("%s: decrypt error = %v, want InvalidCiphertextException", name, err)
		}
	}

	// Tampering with the blob is rejected.
	tampered := bytes.Clone(enc.CiphertextBlob)
	tampered[len(tampered)-1] ^= 1
	_, err = client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: tampered, EncryptionContext: encCtx})
	var ice *types.InvalidCiphertextException
	if !errors.As(err, &ice) {
		t.Errorf("tampered decrypt error = %v, want InvalidCiphertextException", err)
	}
	if got := srv.Calls(kmslocal.OpEncrypt); got != 1 {
		t.Errorf("Encrypt calls = %d, want 1", got)
	}
	if got := srv.Calls(kmslocal.OpDecrypt); got != 10 {
		t.Errorf("Decrypt calls = %d, want 10", got)
	}
}

func TestGenerateDataKey(t *testing.T) {
	srv, key, client, _ := newClient(t)
	ctx := context.Background()
	out, err := client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId: aws.String(key.ID), KeySpec: types.DataKeySpecAes256, EncryptionContext: map[string]string{"org_id": "o"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Plaintext) != 32 || aws.ToString(out.KeyId) != key.ARN {
		t.Fatalf("plaintext %d bytes, key %q", len(out.Plaintext), aws.ToString(out.KeyId))
	}
	dec, err := client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, KeyId: aws.String(key.ARN),
		EncryptionContext: map[string]string{"org_id": "o"}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dec.Plaintext, out.Plaintext) {
		t.Fatal("decrypted data key differs from generated one")
	}
	out16, err := client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(key.ID), NumberOfBytes: aws.Int32(16)})
	if err != nil || len(out16.Plaintext) != 16 {
		t.Fatalf("NumberOfBytes 16: %v, %d bytes", err, len(out16.Plaintext))
	}
	if _, err := client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(key.ID)}); err == nil {
		t.Fatal("GenerateDataKey without KeySpec or NumberOfBytes succeeded")
	}
	if got := srv.Calls(kmslocal.OpGenerateDataKey); got != 3 {
		t.Errorf("GenerateDataKey calls = %d, want 3", got)
	}
}

func TestUnknownAndIncorrectKeys(t *testing.T) {
	srv, key, client, _ := newClient(t)
	ctx := context.Background()
	var nf *types.NotFoundException
	for _, id := range []string{"alias/missing", "00000000-0000-4000-8000-000000000000",
		"arn:aws:kms:us-east-1:111122223333:key/" + key.ID} { // right id, wrong region
		_, err := client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: types.DataKeySpecAes256})
		if !errors.As(err, &nf) {
			t.Errorf("GenerateDataKey with %q: err = %v, want NotFoundException", id, err)
		}
	}
	other, err := srv.CreateKey()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(key.ID), Plaintext: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, KeyId: aws.String(other.ID)})
	var ike *types.IncorrectKeyException
	if !errors.As(err, &ike) {
		t.Errorf("decrypt under another key: err = %v, want IncorrectKeyException", err)
	}
	_, err = client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, KeyId: aws.String("alias/missing")})
	if !errors.As(err, &nf) {
		t.Errorf("decrypt with unknown KeyId: err = %v, want NotFoundException", err)
	}
}

// rawCall posts body with the given headers and decodes the KMS error body.
func rawCall(t *testing.T, url string, headers map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("decode error body: %v", err)
	}
	return resp.StatusCode, e.Type
}

func TestProtocolRejections(t *testing.T) {
	srv, key, _, url := newClient(t)
	signed := "AWS4-HMAC-SHA256 Credential=AKID/20300101/eu-west-1/kms/aws4_request, SignedHeaders=host, Signature=00"
	body := `{"KeyId":"` + key.ID + `","KeySpec":"AES_256"}`
	cases := []struct {
		name     string
		headers  map[string]string
		body     string
		wantType string
	}{
		{"missing target", map[string]string{"Content-Type": "application/x-amz-json-1.1", "Authorization": signed}, body, "UnknownOperationException"},
		{"unknown operation", map[string]string{"X-Amz-Target": "TrentService.ScheduleKeyDeletion", "Content-Type": "application/x-amz-json-1.1", "Authorization": signed}, body, "UnknownOperationException"},
		{"wrong service", map[string]string{"X-Amz-Target": "DynamoDB_20120810.GenerateDataKey", "Content-Type": "application/x-amz-json-1.1", "Authorization": signed}, body, "UnknownOperationException"},
		{"wrong content type", map[string]string{"X-Amz-Target": "TrentService.GenerateDataKey", "Content-Type": "application/json", "Authorization": signed}, body, "SerializationException"},
		{"unsigned", map[string]string{"X-Amz-Target": "TrentService.GenerateDataKey", "Content-Type": "application/x-amz-json-1.1"}, body, "MissingAuthenticationTokenException"},
		{"bad json", map[string]string{"X-Amz-Target": "TrentService.GenerateDataKey", "Content-Type": "application/x-amz-json-1.1", "Authorization": signed}, `{"KeyId":`, "SerializationException"},
		{"bad base64 blob", map[string]string{"X-Amz-Target": "TrentService.Decrypt", "Content-Type": "application/x-amz-json-1.1", "Authorization": signed}, `{"CiphertextBlob":"!!"}`, "SerializationException"},
		{"garbage blob", map[string]string{"X-Amz-Target": "TrentService.Decrypt", "Content-Type": "application/x-amz-json-1.1", "Authorization": signed}, `{"CiphertextBlob":"AAAA"}`, "InvalidCiphertextException"},
	}
	for _, tc := range cases {
		status, typ := rawCall(t, url, tc.headers, tc.body)
		if status != http.StatusBadRequest || typ != tc.wantType {
			t.Errorf("%s: got %d %q, want 400 %q", tc.name, status, typ, tc.wantType)
		}
	}
	// The raw happy path works with a hand-written request, proving the wire format is plain
	// KMS JSON rather than something only the SDK happens to accept.
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("X-Amz-Target", "TrentService.GenerateDataKey")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("Authorization", signed)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		CiphertextBlob []byte
		Plaintext      []byte
		KeyId          string
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("raw GenerateDataKey: status %d, err %v", resp.StatusCode, err)
	}
	if len(out.Plaintext) != 32 || len(out.CiphertextBlob) == 0 || out.KeyId != key.ARN {
		t.Fatalf("raw GenerateDataKey response: %d-byte plaintext, %d-byte blob, key %q", len(out.Plaintext), len(out.CiphertextBlob), out.KeyId)
	}
	// Requests without a recognised target are not counted as any operation.
	if got := srv.Calls(kmslocal.OpGenerateDataKey); got != 4 { // wrong content type, unsigned, bad json, happy path
		t.Errorf("GenerateDataKey calls = %d, want 4", got)
	}
}

// A disabled key refuses every operation with the real DisabledException until it is enabled
// again, as in KMS; other keys are unaffected.
func TestDisabledKey(t *testing.T) {
	srv, key, client, _ := newClient(t)
	ctx := context.Background()
	other, err := srv.CreateKey()
	if err != nil {
		t.Fatal(err)
	}
	encCtx := map[string]string{"org_id": "a"}
	enc, err := client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(key.ID), Plaintext: []byte("k"), EncryptionContext: encCtx})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.DisableKey(key.ARN); err != nil {
		t.Fatal(err)
	}
	var disabled *types.DisabledException
	_, err = client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: encCtx})
	if !errors.As(err, &disabled) {
		t.Fatalf("decrypt under a disabled key: %v, want DisabledException", err)
	}
	_, err = client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(key.ID), Plaintext: []byte("k"), EncryptionContext: encCtx})
	if !errors.As(err, &disabled) {
		t.Fatalf("encrypt under a disabled key: %v, want DisabledException", err)
	}
	_, err = client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(key.ID), KeySpec: types.DataKeySpecAes256})
	if !errors.As(err, &disabled) {
		t.Fatalf("generate under a disabled key: %v, want DisabledException", err)
	}
	if _, err := client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(other.ID), Plaintext: []byte("k")}); err != nil {
		t.Fatalf("another key is affected: %v", err)
	}
	if err := srv.EnableKey(key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: encCtx}); err != nil {
		t.Fatalf("decrypt after EnableKey: %v", err)
	}
	if err := srv.DisableKey("alias/none"); err == nil {
		t.Fatal("disabling an unknown key succeeded")
	}
}
