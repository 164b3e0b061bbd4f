package connections

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/seal"
)

// Credentials are a connection's secrets. They exist in plaintext only in memory: at rest they
// are sealed under the org's data key, and no type here prints them.
type Credentials struct {
	Kind Kind
	// cloud_token
	Email    string
	APIToken jira.Secret
	// datacenter_pat
	PAT jira.Secret
	// cloud_oauth
	Access  jira.Secret
	Refresh jira.Secret
	Expiry  time.Time
	Issued  time.Time
	Scopes  []string
}

// sealedCredentials is the JSON inside the sealed blob.
type sealedCredentials struct {
	Kind     Kind      `json:"kind"`
	Email    string    `json:"email,omitempty"`
	APIToken string    `json:"api_token,omitempty"`
	PAT      string    `json:"pat,omitempty"`
	Access   string    `json:"access_token,omitempty"`
	Refresh  string    `json:"refresh_token,omitempty"`
	Expiry   time.Time `json:"expiry,omitzero"`
	Issued   time.Time `json:"issued,omitzero"`
	Scopes   []string  `json:"scopes,omitempty"`
}

// purpose binds each credential kind to its own sealing purpose, so a blob of one kind can never
// be opened as another.
func purpose(k Kind) string {
	switch k {
	case KindCloudOAuth:
		return seal.PurposeOAuthTokens
	case KindCloudToken:
		return seal.PurposeAPIToken
	default:
		return seal.PurposePAT
	}
}

// SealCredentials seals c for one connection of one org.
func SealCredentials(ctx context.Context, s *seal.Sealer, orgID, connID uuid.UUID, c Credentials) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	plain, err := json.Marshal(sealedCredentials{
		Kind: c.Kind, Email: c.Email, APIToken: c.APIToken.Reveal(), PAT: c.PAT.Reveal(),
		Access: c.Access.Reveal(), Refresh: c.Refresh.Reveal(), Expiry: c.Expiry, Issued: c.Issued, Scopes: c.Scopes,
	})
	if err != nil {
		return nil, fmt.Errorf("encode credentials: %w", err)
	}
	defer clear(plain)
	out, err := s.Seal(ctx, seal.Binding{OrgID: orgID, ConnectionID: connID, Purpose: purpose(c.Kind)}, plain)
	if err != nil {
		return nil, fmt.Errorf("seal credentials of connection %s: %w", connID, err)
	}
	return out, nil
}

// OpenCredentials reverses SealCredentials.
func OpenCredentials(ctx context.Context, s *seal.Sealer, orgID, connID uuid.UUID, kind Kind, sealed []byte) (Credentials, error) {
	if len(sealed) == 0 {
		return Credentials{}, fmt.Errorf("connection %s has no stored credentials", connID)
	}
	plain, err := s.Open(ctx, seal.Binding{OrgID: orgID, ConnectionID: connID, Purpose: purpose(kind)}, sealed)
	if err != nil {
		return Credentials{}, fmt.Errorf("open credentials of connection %s: %w", connID, err)
	}
	defer clear(plain)
	var sc sealedCredentials
	if err := json.Unmarshal(plain, &sc); err != nil {
		return Credentials{}, fmt.Errorf("decode credentials of connection %s: malformed", connID)
	}
	if sc.Kind != kind {
		return Credentials{}, fmt.Errorf("credentials of connection %s are for %s, not %s", connID, sc.Kind, kind)
	}
	return Credentials{
		Kind: sc.Kind, Email: sc.Email, APIToken: jira.NewSecret(sc.APIToken), PAT: jira.NewSecret(sc.PAT),
		Access: jira.NewSecret(sc.Access), Refresh: jira.NewSecret(sc.Refresh), Expiry: sc.Expiry, Issued: sc.Issued, Scopes: sc.Scopes,
	}, nil
}

func (c Credentials) validate() error {
	switch c.Kind {
	case KindCloudToken:
		if c.Email == "" || c.APIToken.IsZero() {
			return fmt.Errorf("cloud_token credentials need an email and an API token")
		}
	case KindDataCenterPAT:
		if c.PAT.IsZero() {
			return fmt.Errorf("datacenter_pat credentials need a personal access token")
		}
	case KindCloudOAuth:
		if c.Access.IsZero() && c.Refresh.IsZero() {
			return fmt.Errorf("cloud_oauth credentials need tokens")
		}
	default:
		return fmt.Errorf("unknown connection kind %q", c.Kind)
	}
	return nil
}

// OAuthCredentials are the credentials of a cloud_oauth connection holding t.
func OAuthCredentials(t jira.Tokens) Credentials {
	return Credentials{Kind: KindCloudOAuth, Access: t.Access, Refresh: t.Refresh, Expiry: t.Expiry, Issued: t.Issued, Scopes: t.Scopes}
}

// Tokens converts OAuth credentials to the client's token pair.
func (c Credentials) Tokens() jira.Tokens {
	return jira.Tokens{Access: c.Access, Refresh: c.Refresh, Expiry: c.Expiry, Issued: c.Issued, Scopes: c.Scopes}
}

// String never reveals secrets.
func (c Credentials) String() string { return "Credentials(" + string(c.Kind) + ", [redacted])" }

// GoString never reveals secrets.
func (c Credentials) GoString() string { return c.String() }
