package connections

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/seal"
)

// Errors callers switch on.
var (
	// ErrNotFound: no such connection in this org (also for other orgs' connections).
	ErrNotFound = errors.New("connection not found")
	// ErrRevoked: the connection was revoked; its credentials are gone and no Jira call may be made.
	ErrRevoked = errors.New("connection is revoked")
	// ErrCredentialsChanged: a rotated token pair could not be stored because newer credentials
	// were stored meanwhile (another process refreshed, or the user re-authorized).
	ErrCredentialsChanged = errors.New("connection credentials changed concurrently")
)

// WorkflowIDPrefix prefixes every connection workflow id.
const WorkflowIDPrefix = "jira-connection/"

// WorkflowID is the stable id of a connection's workflow, stored with the connection. It is
// derived from the connection id only, so a workflow can be signalled or queried without a
// lookup, and a duplicate start is rejected.
func WorkflowID(connectionID uuid.UUID) string { return WorkflowIDPrefix + connectionID.String() }

// Connection is a stored connection without its secrets.
type Connection struct {
	OrgID         uuid.UUID
	ID            uuid.UUID
	Kind          Kind
	SiteURL       string
	CloudID       string
	Status        Status
	Config        Config
	Scopes        []string
	WorkflowID    string
	Stale         bool
	LastSyncAt    *time.Time
	LastSuccessAt *time.Time
	NextSyncAt    *time.Time
	LastError     string
	LastErrorKind string
	// FindingSyncError is the latest finding push that failed for a configuration reason and
	// waits for the configuration to change; nil when there is none. It is kept apart from
	// LastError, which belongs to the evidence sync.
	FindingSyncError   *FindingSyncError
	CreatedAt          time.Time
	DeletedAt          *time.Time
	CredentialsVersion int32
	HasCredentials     bool
}

// FindingSyncError is a finding push that failed for a configuration reason.
type FindingSyncError struct {
	Message string    `json:"message"`
	Kind    string    `json:"kind"`
	At      time.Time `json:"at"`
}

// FromRow converts a database row.
func FromRow(r dbq.Connection) (Connection, error) {
	cfg, err := ParseConfig(r.Config)
	if err != nil {
		return Connection{}, err
	}
	c := Connection{
		OrgID: r.OrgID, ID: r.ID, Kind: Kind(r.Kind), SiteURL: r.SiteUrl, Status: Status(r.Status), Config: cfg,
		Scopes: r.Scopes, WorkflowID: r.WorkflowID, Stale: r.Stale, LastSyncAt: r.LastSyncAt,
		LastSuccessAt: r.LastSuccessAt, NextSyncAt: r.NextSyncAt, CreatedAt: r.CreatedAt, DeletedAt: r.DeletedAt,
		CredentialsVersion: r.CredentialsVersion, HasCredentials: len(r.SealedCredentials) > 0,
	}
	if r.CloudID != nil {
		c.CloudID = *r.CloudID
	}
	if r.LastError != nil {
		c.LastError = *r.LastError
	}
	if r.LastErrorKind != nil {
		c.LastErrorKind = *r.LastErrorKind
	}
	if r.FindingSyncError != nil {
		e := FindingSyncError{Message: *r.FindingSyncError}
		if r.FindingSyncErrorKind != nil {
			e.Kind = *r.FindingSyncErrorKind
		}
		if r.FindingSyncErrorAt != nil {
			e.At = r.FindingSyncErrorAt.UTC()
		}
		c.FindingSyncError = &e
	}
	return c, nil
}

// Service loads connections and builds Jira clients for them. One Service is shared by the whole
// process, because it owns the OAuth token sources: Atlassian revokes a grant whose rotated
// refresh token is reused, so two refreshes of one connection must never race — inside a process
// (one token source per connection, single-flight) nor across processes (each refresh runs under a
// per-connection Postgres advisory lock and starts from the tokens stored at that moment).
type Service struct {
	DB     *db.DB
	Sealer *seal.Sealer
	// OAuth is the Atlassian OAuth app; nil when OAuth is not configured.
	OAuth *jira.OAuthApp
	// HTTPClient carries every Jira call of every connection. It must enforce the egress policy
	// (egress.Policy.HTTPClient): a tenant chooses the site, so an unguarded client would let a
	// tenant reach the server's own network. Required: with nil, Client fails instead of falling
	// back to an unguarded default.
	HTTPClient *http.Client
	Log        *slog.Logger

	mu      sync.Mutex
	sources map[uuid.UUID]*tokenSourceEntry
}

type tokenSourceEntry struct {
	ts      *jira.TokenSource
	version int32
}

// Get loads a connection of org orgID.
func (s *Service) Get(ctx context.Context, orgID, connID uuid.UUID) (Connection, error) {
	var out Connection
	err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.GetConnection(ctx, connID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		out, err = FromRow(row)
		return err
	})
	if err != nil {
		return Connection{}, fmt.Errorf("load connection %s: %w", connID, err)
	}
	return out, nil
}

// loadSealed returns the connection and its sealed credentials.
func (s *Service) loadSealed(ctx context.Context, orgID, connID uuid.UUID) (Connection, []byte, error) {
	var conn Connection
	var sealed []byte
	err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.GetConnection(ctx, connID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		sealed = row.SealedCredentials
		conn, err = FromRow(row)
		return err
	})
	if err != nil {
		return Connection{}, nil, fmt.Errorf("load connection %s: %w", connID, err)
	}
	if conn.DeletedAt != nil || conn.Status == StatusRevoked || len(sealed) == 0 {
		return conn, nil, fmt.Errorf("connection %s: %w", connID, ErrRevoked)
	}
	return conn, sealed, nil
}

// Client returns a Jira client for the connection, counting calls into stats (may be nil). It
// fails with ErrRevoked for a revoked connection, so nothing can call Jira after revoke.
func (s *Service) Client(ctx context.Context, orgID, connID uuid.UUID, stats *jira.CallStats) (*jira.Client, Connection, error) {
	conn, sealed, err := s.loadSealed(ctx, orgID, connID)
	if err != nil {
		return nil, conn, err
	}
	auth, baseURL, err := s.auth(ctx, conn, sealed)
	if err != nil {
		return nil, conn, err
	}
	client, err := s.NewJiraClient(jira.Config{
		Flavor: Flavor(conn.Kind), BaseURL: baseURL, SiteURL: conn.SiteURL, Auth: auth, Stats: stats,
		Logger: s.logger().With(slog.String("org_id", orgID.String()), slog.String("connection_id", connID.String())),
	})
	if err != nil {
		return nil, conn, fmt.Errorf("jira client for connection %s: %w", connID, err)
	}
	return client, conn, nil
}

// ErrNoHTTPClient: the Service was built without its egress-guarded HTTP client.
var ErrNoHTTPClient = errors.New("connections: no egress-guarded HTTP client configured")

// NewJiraClient builds a Jira client that calls through the Service's guarded HTTP client
// (cfg.HTTPClient is overridden). Everything that calls a tenant's site — the connection's
// client, and the API's check of new credentials — goes through here.
func (s *Service) NewJiraClient(cfg jira.Config) (*jira.Client, error) {
	if s.HTTPClient == nil {
		return nil, ErrNoHTTPClient
	}
	cfg.HTTPClient = s.HTTPClient
	if cfg.Logger == nil {
		cfg.Logger = s.logger()
	}
	return jira.New(cfg)
}

func (s *Service) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Flavor maps a connection kind to the Jira API flavor it speaks.
func Flavor(k Kind) jira.Flavor {
	if k == KindDataCenterPAT {
		return jira.DataCenter
	}
	return jira.Cloud
}

func (s *Service) auth(ctx context.Context, conn Connection, sealed []byte) (jira.Auth, string, error) {
	if conn.Kind == KindCloudOAuth {
		ts, err := s.tokenSource(ctx, conn, sealed)
		if err != nil {
			return nil, "", err
		}
		if s.OAuth == nil {
			return nil, "", errors.New("OAuth is not configured (JIRA_OAUTH_CLIENT_ID)")
		}
		base, err := s.OAuth.GatewayURL(conn.CloudID)
		if err != nil {
			return nil, "", fmt.Errorf("connection %s: %w", conn.ID, err)
		}
		return jira.OAuth(ts), base, nil
	}
	creds, err := OpenCredentials(ctx, s.Sealer, conn.OrgID, conn.ID, conn.Kind, sealed)
	if err != nil {
		return nil, "", err
	}
	if conn.Kind == KindCloudToken {
		return jira.APIToken(creds.Email, creds.APIToken), conn.SiteURL, nil
	}
	return jira.PAT(creds.PAT), conn.SiteURL, nil
}

// tokenSource returns the process-wide token source of an OAuth connection, rebuilding it when
// the stored credentials are newer than the ones it was built from (re-auth, or a refresh by
// another process).
func (s *Service) tokenSource(ctx context.Context, conn Connection, sealed []byte) (*jira.TokenSource, error) {
	if s.OAuth == nil {
		return nil, errors.New("OAuth is not configured (JIRA_OAUTH_CLIENT_ID)")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.sources[conn.ID]; ok && e.version >= conn.CredentialsVersion {
		return e.ts, nil
	}
	creds, err := OpenCredentials(ctx, s.Sealer, conn.OrgID, conn.ID, conn.Kind, sealed)
	if err != nil {
		return nil, err
	}
	entry := &tokenSourceEntry{version: conn.CredentialsVersion}
	orgID, connID := conn.OrgID, conn.ID
	ts, err := jira.NewTokenSource(jira.TokenSourceConfig{
		App:     s.OAuth,
		Initial: creds.Tokens(),
		Logger:  s.Log,
		Exclusive: func(ctx context.Context, refresh func(context.Context, jira.Tokens) (jira.Tokens, bool, error)) (jira.Tokens, error) {
			return s.refreshExclusive(ctx, orgID, connID, entry, refresh)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("token source for connection %s: %w", conn.ID, err)
	}
	entry.ts = ts
	if s.sources == nil {
		s.sources = map[uuid.UUID]*tokenSourceEntry{}
	}
	s.sources[conn.ID] = entry
	return ts, nil
}

// refreshExclusive is the cross-process critical section of an OAuth refresh. In one transaction
// it takes the connection's refresh lock (waiting for any process refreshing it), reads the stored
// credentials — which another process may have rotated meanwhile — hands them to refresh, and
// stores a rotated pair before the lock is released. The token endpoint is called while the lock
// is held, so the second of two racing processes finds the first one's tokens and uses them
// instead of presenting the refresh token the first one already spent.
func (s *Service) refreshExclusive(ctx context.Context, orgID, connID uuid.UUID, entry *tokenSourceEntry,
	refresh func(context.Context, jira.Tokens) (jira.Tokens, bool, error)) (jira.Tokens, error) {
	var out jira.Tokens
	var version int32
	err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		if err := q.LockCredentialRefresh(ctx, connID); err != nil {
			return fmt.Errorf("take the refresh lock: %w", err)
		}
		row, err := q.GetConnection(ctx, connID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if row.DeletedAt != nil || len(row.SealedCredentials) == 0 {
			return ErrRevoked
		}
		creds, err := OpenCredentials(ctx, s.Sealer, orgID, connID, KindCloudOAuth, row.SealedCredentials)
		if err != nil {
			return err
		}
		next, changed, err := refresh(ctx, creds.Tokens())
		if err != nil {
			return err
		}
		out, version = next, row.CredentialsVersion
		if !changed {
			return nil
		}
		sealed, err := SealCredentials(ctx, s.Sealer, orgID, connID, OAuthCredentials(next))
		if err != nil {
			return err
		}
		// Under the lock only a re-authorization can have stored newer credentials, and it does
		// not take the lock: the compare-and-set keeps its credentials.
		version, err = q.RotateConnectionCredentials(ctx, dbq.RotateConnectionCredentialsParams{
			SealedCredentials: sealed, ID: connID, ExpectedVersion: row.CredentialsVersion,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrCredentialsChanged
		}
		return err
	})
	if err != nil {
		if errors.Is(err, ErrCredentialsChanged) || errors.Is(err, ErrRevoked) {
			s.Forget(connID)
		}
		return jira.Tokens{}, fmt.Errorf("refresh oauth tokens of connection %s: %w", connID, err)
	}
	s.mu.Lock()
	entry.version = version
	s.mu.Unlock()
	return out, nil
}

// Forget drops the cached token source of a connection (after re-auth or revoke).
func (s *Service) Forget(connID uuid.UUID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sources, connID)
}

// WebhookSecrets are the two secrets of a connection's webhook endpoint, shown to the admin once.
type WebhookSecrets struct {
	// URLSecret is the last path segment of the webhook URL; only its SHA-256 is stored.
	URLSecret string
	// SigningSecret is the HMAC key Jira signs admin webhooks with (X-Hub-Signature); stored
	// sealed, because verifying needs the key itself. Empty when not used.
	SigningSecret string
}

// NewWebhookSecrets generates fresh secrets; withSigning adds an HMAC signing secret (admin
// webhooks; dynamic webhooks of OAuth apps are not HMAC-signed by Jira).
func NewWebhookSecrets(withSigning bool) (WebhookSecrets, error) {
	u, err := randomToken()
	if err != nil {
		return WebhookSecrets{}, err
	}
	out := WebhookSecrets{URLSecret: u}
	if withSigning {
		if out.SigningSecret, err = randomToken(); err != nil {
			return WebhookSecrets{}, err
		}
	}
	return out, nil
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate webhook secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashURLSecret is the stored form of a webhook URL secret.
func HashURLSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// SealSigningSecret seals an HMAC signing secret for storage (nil when there is none).
func (s *Service) SealSigningSecret(ctx context.Context, orgID, connID uuid.UUID, secret string) ([]byte, error) {
	if secret == "" {
		return nil, nil
	}
	out, err := s.Sealer.Seal(ctx, seal.Binding{OrgID: orgID, ConnectionID: connID, Purpose: seal.PurposeWebhookSecret}, []byte(secret))
	if err != nil {
		return nil, fmt.Errorf("seal webhook signing secret of connection %s: %w", connID, err)
	}
	return out, nil
}

// WebhookSigningSecret returns the connection's HMAC signing secret, or ok=false when its
// webhooks are unsigned. The caller clears the returned bytes after use.
func (s *Service) WebhookSigningSecret(ctx context.Context, orgID, connID uuid.UUID) ([]byte, bool, error) {
	var sealed []byte
	err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		var err error
		sealed, err = q.GetWebhookSigningSecret(ctx, connID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("load webhook signing secret of connection %s: %w", connID, err)
	}
	if len(sealed) == 0 {
		return nil, false, nil
	}
	secret, err := s.Sealer.Open(ctx, seal.Binding{OrgID: orgID, ConnectionID: connID, Purpose: seal.PurposeWebhookSecret}, sealed)
	if err != nil {
		return nil, false, fmt.Errorf("open webhook signing secret of connection %s: %w", connID, err)
	}
	return secret, true, nil
}
