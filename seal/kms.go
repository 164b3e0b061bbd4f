package seal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/google/uuid"
)

// EncryptionContextOrgID is the KMS encryption context key that binds a data key to its
// organization. KMS refuses to decrypt the wrapped key unless the same context is presented,
// and the context is recorded in CloudTrail, so every unwrap is attributable to an org.
const EncryptionContextOrgID = "org_id"

// KMSConfig configures a KMSProvider.
type KMSConfig struct {
	// KeyID is the KMS key used to generate data keys: a key id, key ARN, alias name
	// ("alias/jiraconnect") or alias ARN.
	KeyID string
	// Region is the AWS region. If empty, the SDK's default chain (AWS_REGION, shared config)
	// must provide one.
	Region string
	// Endpoint overrides the KMS endpoint (BaseEndpoint), for LocalStack or kmslocal in tests.
	Endpoint string
	// AccessKeyID, SecretAccessKey and SessionToken, when AccessKeyID is set, replace the SDK's
	// default credential chain with static credentials (dummy values suffice for kmslocal).
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// String describes the configuration with the secret access key and session token redacted,
// so a config dump in a log line cannot leak them.
func (c KMSConfig) String() string {
	return fmt.Sprintf("seal.KMSConfig{KeyID: %q, Region: %q, Endpoint: %q, AccessKeyID: %q, SecretAccessKey: %s, SessionToken: %s}",
		c.KeyID, c.Region, c.Endpoint, c.AccessKeyID, redactIfSet(c.SecretAccessKey), redactIfSet(c.SessionToken))
}

// GoString redacts like String.
func (c KMSConfig) GoString() string { return c.String() }

// Format redacts like String for every fmt verb.
func (c KMSConfig) Format(f fmt.State, _ rune) { _, _ = fmt.Fprint(f, c.String()) }

// LogValue redacts like String.
func (c KMSConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("key_id", c.KeyID), slog.String("region", c.Region), slog.String("endpoint", c.Endpoint),
		slog.String("access_key_id", c.AccessKeyID),
		slog.String("secret_access_key", redactIfSet(c.SecretAccessKey)),
		slog.String("session_token", redactIfSet(c.SessionToken)))
}

// MarshalJSON redacts like String.
func (c KMSConfig) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"key_id": c.KeyID, "region": c.Region, "endpoint": c.Endpoint, "access_key_id": c.AccessKeyID,
		"secret_access_key": redactIfSet(c.SecretAccessKey), "session_token": redactIfSet(c.SessionToken),
	})
}

func redactIfSet(s string) string {
	if s == "" {
		return `""`
	}
	return redacted
}

// KMSProvider is the production KeyProvider, backed by AWS KMS GenerateDataKey/Decrypt with
// the org id as encryption context.
type KMSProvider struct {
	client *kms.Client
	keyID  string
}

// NewKMSProvider builds a KMS client from the default AWS configuration chain plus the
// overrides in cfg. It makes no network calls, so a wrong key id surfaces on first use.
func NewKMSProvider(ctx context.Context, cfg KMSConfig) (*KMSProvider, error) {
	if cfg.KeyID == "" {
		return nil, errors.New("new kms provider: key id is empty")
	}
	if strings.HasPrefix(cfg.KeyID, "local:") {
		return nil, fmt.Errorf("new kms provider: key id %q is a local keyring id, not a KMS key", cfg.KeyID)
	}
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		if cfg.SecretAccessKey == "" {
			return nil, errors.New("new kms provider: static access key id given without secret access key")
		}
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("new kms provider: load aws config: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("new kms provider: no region configured (set Region or AWS_REGION)")
	}
	client := kms.NewFromConfig(awsCfg, func(o *kms.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return &KMSProvider{client: client, keyID: cfg.KeyID}, nil
}

func orgContext(orgID uuid.UUID) map[string]string {
	return map[string]string{EncryptionContextOrgID: orgID.String()}
}

// GenerateDataKey implements KeyProvider. The returned KeyID is the key ARN reported by KMS
// (not the alias), so a later alias retarget cannot change which key Decrypt expects.
func (p *KMSProvider) GenerateDataKey(ctx context.Context, orgID uuid.UUID) (DataKey, error) {
	if orgID == uuid.Nil {
		return DataKey{}, errors.New("kms generate data key: org id is nil")
	}
	out, err := p.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:             aws.String(p.keyID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: orgContext(orgID),
	})
	if err != nil {
		// SDK errors carry the operation, HTTP status, request id and the service's message;
		// request and response bodies (the only places key material lives) are not included.
		return DataKey{}, fmt.Errorf("kms generate data key for org %s with key %s: %w", orgID, p.keyID, err)
	}
	if len(out.Plaintext) != DataKeySize || len(out.CiphertextBlob) == 0 {
		zero(out.Plaintext)
		return DataKey{}, fmt.Errorf("kms generate data key for org %s: unexpected response (plaintext %d bytes, ciphertext %d bytes)",
			orgID, len(out.Plaintext), len(out.CiphertextBlob))
	}
	keyID := aws.ToString(out.KeyId)
	if keyID == "" {
		keyID = p.keyID
	}
	return DataKey{Plaintext: out.Plaintext, Wrapped: out.CiphertextBlob, KeyID: keyID}, nil
}

// Decrypt implements KeyProvider. It passes KeyId so KMS verifies the blob was wrapped under
// the expected key, and the org's encryption context so a blob belonging to another org is
// rejected by KMS itself.
func (p *KMSProvider) Decrypt(ctx context.Context, orgID uuid.UUID, wrapped []byte, keyID string) ([]byte, error) {
	if orgID == uuid.Nil {
		return nil, errors.New("kms decrypt data key: org id is nil")
	}
	if keyID == "" {
		keyID = p.keyID
	}
	if strings.HasPrefix(keyID, "local:") {
		return nil, fmt.Errorf("kms decrypt data key for org %s: %w: key %q was wrapped by a local keyring, not KMS",
			orgID, ErrUnwrap, keyID)
	}
	out, err := p.client.Decrypt(ctx, &kms.DecryptInput{
		CiphertextBlob:    wrapped,
		KeyId:             aws.String(keyID),
		EncryptionContext: orgContext(orgID),
	})
	if err != nil {
		var invalid *types.InvalidCiphertextException
		var incorrect *types.IncorrectKeyException
		if errors.As(err, &invalid) || errors.As(err, &incorrect) {
			return nil, fmt.Errorf("kms decrypt data key for org %s with key %s: %w: %w", orgID, keyID, ErrUnwrap, err)
		}
		return nil, fmt.Errorf("kms decrypt data key for org %s with key %s: %w", orgID, keyID, err)
	}
	if len(out.Plaintext) != DataKeySize {
		zero(out.Plaintext)
		return nil, fmt.Errorf("kms decrypt data key for org %s: unexpected plaintext length %d", orgID, len(out.Plaintext))
	}
	return out.Plaintext, nil
}

// WrapDataKey implements KeyProvider with KMS Encrypt under the configured key (KMS_KEY_ID) and
// the org's encryption context, exactly as GenerateDataKey binds a new key. The returned key id is
// the key ARN KMS reports, so a re-wrap through an alias records which key it really used.
func (p *KMSProvider) WrapDataKey(ctx context.Context, orgID uuid.UUID, plaintext []byte) ([]byte, string, error) {
	if orgID == uuid.Nil {
		return nil, "", errors.New("kms wrap data key: org id is nil")
	}
	if len(plaintext) != DataKeySize {
		return nil, "", fmt.Errorf("kms wrap data key for org %s: key is %d bytes, want %d", orgID, len(plaintext), DataKeySize)
	}
	out, err := p.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(p.keyID),
		Plaintext:         plaintext,
		EncryptionContext: orgContext(orgID),
	})
	if err != nil {
		return nil, "", fmt.Errorf("kms wrap data key for org %s with key %s: %w", orgID, p.keyID, err)
	}
	if len(out.CiphertextBlob) == 0 {
		return nil, "", fmt.Errorf("kms wrap data key for org %s: empty ciphertext", orgID)
	}
	keyID := aws.ToString(out.KeyId)
	if keyID == "" {
		keyID = p.keyID
	}
	return out.CiphertextBlob, keyID, nil
}
