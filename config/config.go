// Package config reads jiraconnect's configuration from environment variables. Every setting has
// a documented default (see Vars and the README); a malformed value is a start-up error naming
// the variable, never a silent fallback.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jiraconnect/jiraconnect/egress"
)

// Var documents one environment variable.
type Var struct {
	Name    string
	Default string
	Help    string
}

// Vars is the single list of supported variables, rendered into the README's configuration table
// and used by Load. Keeping both in one place stops documentation and behaviour drifting apart.
func Vars() []Var {
	return []Var{
		{"DATABASE_URL", "postgres://jiraconnect_app@127.0.0.1:5432/jiraconnect?sslmode=disable", "Postgres URL `api`, `worker` and `orgs create` log in with: the application role `jiraconnect_app` (or a member of it). They refuse to start if this login is a superuser, has BYPASSRLS, CREATEROLE or REPLICATION, owns the database or anything in it, or is a member of a role that does (see Database roles)."},
		{"DATABASE_OWNER_URL", "postgres://postgres@127.0.0.1:5432/jiraconnect?sslmode=disable", "Postgres URL of the schema owner, used only by `migrate` (and by the dev stack, which also derives DATABASE_URL from it)."},
		{"DATABASE_ALLOW_PRIVILEGED_LOGIN", "false", "Development only: accept a DATABASE_URL login that the check above refuses and switch its sessions to `jiraconnect_app` with SET ROLE, which any SQL reaching a session can undo. Logged as a warning; nothing in this repository needs it."},
		{"DATABASE_MAX_CONNS", "10", "Connection pool size per process."},
		{"TEMPORAL_ADDRESS", "127.0.0.1:7233", "Temporal frontend host:port."},
		{"TEMPORAL_NAMESPACE", "default", "Temporal namespace."},
		{"TEMPORAL_TASK_QUEUE", "jira-connections", "Task queue of the connection workflows and activities."},
		{"API_ADDR", ":8080", "Listen address of the HTTP API (the tenants' API, /healthz and /readyz for load balancers, the OAuth callback and webhooks)."},
		{"OPS_ADDR", "127.0.0.1:9090", "Listen address of the API process's operator endpoints (/metrics, /healthz, /readyz); keep it off the public network."},
		{"WORKER_ADDR", "127.0.0.1:8081", "Listen address of the worker's operator endpoints (/healthz, /readyz, /metrics)."},
		{"WORKER_WORKFLOW_CACHE_SIZE", "2000", "Connection workflows a worker keeps in memory between their tasks (about 60 KiB each); an evicted one is rebuilt from its history at its next task. 0 turns the cache off."},
		{"PUBLIC_URL", "http://localhost:8080", "Externally reachable base URL of the API: OAuth redirect and webhook URLs are built from it."},
		{"API_MAX_BODY_BYTES", "1048576", "Largest accepted request body; larger bodies get 413."},
		{"API_KEY_MAX_TTL", "", "Longest lifetime of an API key, e.g. 2160h; keys created without an expiry (including `orgs create`'s first admin key) get it, and longer expiries are refused. Empty or 0: keys may never expire."},
		{"LOG_LEVEL", "info", "debug, info, warn or error."},
		{"LOG_FORMAT", "json", "json or text."},
		{"KMS_PROVIDER", "local", "`aws` (AWS KMS) or `local` (a key file; development only)."},
		{"KMS_KEY_ID", "", "KMS key id, ARN or alias; required when KMS_PROVIDER=aws."},
		{"KMS_ENDPOINT", "", "Override of the KMS endpoint URL (LocalStack, tests)."},
		{"AWS_REGION", "", "AWS region of the KMS key; required when KMS_PROVIDER=aws."},
		{"LOCAL_KEYRING_DIR", ".jiraconnect", "Directory of the local keyring master key (seal-master.key, created 0600 if missing)."},
		{"KEY_CACHE_TTL", "5m", "How long unwrapped org data keys stay cached in memory, and how long after a data key rotation a process may still seal under the previous version (the re-seal waits this long plus a minute, or twice this long if shorter, before retiring it: give every process the same value)."},
		{"DATA_KEY_ROTATION_PERIOD", "8760h", "Age at which an organization's data key is rotated by the daily Temporal schedule `org-key-rotation` (which also resumes unfinished re-seals); 0 turns scheduled rotation off, otherwise 24h to 87600h."},
		{"FINDING_RECONCILE_INTERVAL", "15m", "How often a connection with finding sync pulls recently changed issues, so lost webhooks still converge (new workflows)."},
		{"EVIDENCE_RETENTION", "8760h", "Evidence older than this (and last observed before it) that no assessment holds is purged daily; at least 168h."},
		{"SUPERVISOR_INTERVAL", "5m", "How often the connection supervisor (Temporal schedule `connection-supervisor`) starts the workflow of any active or needs_reauth connection that has none running; 10s to 24h."},
		{"JIRA_OAUTH_CLIENT_ID", "", "Atlassian OAuth 2.0 (3LO) app client id; needed for cloud_oauth connections."},
		{"JIRA_OAUTH_CLIENT_SECRET", "", "Atlassian OAuth 2.0 (3LO) app client secret."},
		{"JIRA_AUTH_URL", "https://auth.atlassian.com", "Atlassian authorization server."},
		{"JIRA_API_URL", "https://api.atlassian.com", "Atlassian API gateway (accessible-resources, /ex/jira/{cloudid})."},
		{egress.EnvVar, "", "Comma-separated CIDRs, IP addresses and exact host names Jira traffic may reach beyond public addresses (e.g. a Data Center site on a private network), also over plain http; empty allows only public addresses over https. The dev stack, demo and test harnesses set `" + egress.Loopback + "`."},
		{"WEBHOOK_ALLOWED_CIDRS", "", "Comma-separated CIDRs allowed to deliver webhooks; empty allows any source."},
		{"TRUSTED_PROXIES", "", "Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed."},
	}
}

// Config is the parsed configuration.
type Config struct {
	DatabaseURL      string
	DatabaseOwnerURL string
	// DatabaseAllowPrivilegedLogin is the development-only override of db.Open's login check.
	DatabaseAllowPrivilegedLogin bool
	DatabaseMaxConns             int32
	// WorkerWorkflowCacheSize bounds the worker's sticky workflow cache: connection workflows are
	// idle for a day between syncs, and the SDK's default (10,000 cached executions) makes a large
	// fleet cost most of its memory in workflows that will not run for hours.
	WorkerWorkflowCacheSize int

	TemporalAddress   string
	TemporalNamespace string
	TaskQueue         string

	APIAddr string
	// OpsAddr is the API process's operator listener (/metrics and probes), apart from the public
	// listener that also serves webhooks.
	OpsAddr         string
	WorkerAddr      string
	PublicURL       *url.URL
	APIMaxBodyBytes int64
	// APIKeyMaxTTL bounds the lifetime of new API keys; zero means keys may never expire.
	APIKeyMaxTTL    time.Duration
	LogLevel        slog.Level
	LogFormat       string
	KMSProvider     string
	KMSKeyID        string
	KMSEndpoint     string
	AWSRegion       string
	LocalKeyringDir string
	KeyCacheTTL     time.Duration
	// DataKeyRotationPeriod is the age at which the key rotation schedule rotates an
	// organization's data key; zero turns scheduled rotation off.
	DataKeyRotationPeriod time.Duration
	// FindingReconcileInterval is the reconciliation period given to new connection workflows.
	FindingReconcileInterval time.Duration
	// EvidenceRetention is the retention window of unattached evidence.
	EvidenceRetention time.Duration
	// SupervisorInterval is the period of the connection supervisor's schedule.
	SupervisorInterval time.Duration

	JiraOAuthClientID     string
	JiraOAuthClientSecret Secret
	JiraAuthURL           *url.URL
	JiraAPIURL            *url.URL
	// JiraEgressAllow is what Jira traffic may reach beyond public https destinations.
	JiraEgressAllow egress.AllowList

	WebhookAllowedCIDRs []netip.Prefix
	TrustedProxies      []netip.Prefix
}

// Secret holds a configuration secret and never prints it.
type Secret string

// String redacts.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts.
func (s Secret) GoString() string { return s.String() }

// LogValue redacts.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Reveal returns the secret for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// Load reads the process environment.
func Load() (*Config, error) { return LoadFrom(os.LookupEnv) }

// LoadFrom reads configuration through lookup, so tests need not touch the real environment.
// All problems are reported together, each naming its variable.
func LoadFrom(lookup func(string) (string, bool)) (*Config, error) {
	defaults := map[string]string{}
	for _, v := range Vars() {
		defaults[v.Name] = v.Default
	}
	get := func(name string) string {
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return defaults[name]
	}
	var errs []error
	bad := func(name, value, why string) {
		errs = append(errs, fmt.Errorf("%s=%q: %s", name, value, why))
	}

	c := &Config{
		DatabaseURL:       get("DATABASE_URL"),
		DatabaseOwnerURL:  get("DATABASE_OWNER_URL"),
		TemporalAddress:   get("TEMPORAL_ADDRESS"),
		TemporalNamespace: get("TEMPORAL_NAMESPACE"),
		TaskQueue:         get("TEMPORAL_TASK_QUEUE"),
		APIAddr:           get("API_ADDR"),
		OpsAddr:           get("OPS_ADDR"),
		WorkerAddr:        get("WORKER_ADDR"),
		LogFormat:         get("LOG_FORMAT"),
		KMSProvider:       get("KMS_PROVIDER"),
		KMSKeyID:          get("KMS_KEY_ID"),
		KMSEndpoint:       get("KMS_ENDPOINT"),
		AWSRegion:         get("AWS_REGION"),
		LocalKeyringDir:   get("LOCAL_KEYRING_DIR"),

		JiraOAuthClientID:     get("JIRA_OAUTH_CLIENT_ID"),
		JiraOAuthClientSecret: Secret(get("JIRA_OAUTH_CLIENT_SECRET")),
	}
	for _, name := range []string{"DATABASE_URL", "DATABASE_OWNER_URL"} {
		v := c.DatabaseURL
		if name == "DATABASE_OWNER_URL" {
			v = c.DatabaseOwnerURL
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			// The value may carry a password: name the variable, not the value.
			errs = append(errs, fmt.Errorf("%s: must be a postgres:// URL", name))
		}
	}
	if v, err := strconv.ParseBool(get("DATABASE_ALLOW_PRIVILEGED_LOGIN")); err != nil {
		bad("DATABASE_ALLOW_PRIVILEGED_LOGIN", get("DATABASE_ALLOW_PRIVILEGED_LOGIN"), "must be true or false")
	} else {
		c.DatabaseAllowPrivilegedLogin = v
	}
	if n, err := strconv.ParseInt(get("DATABASE_MAX_CONNS"), 10, 32); err != nil || n < 1 || n > 1000 {
		bad("DATABASE_MAX_CONNS", get("DATABASE_MAX_CONNS"), "must be an integer between 1 and 1000")
	} else {
		c.DatabaseMaxConns = int32(n)
	}
	if n, err := strconv.Atoi(get("WORKER_WORKFLOW_CACHE_SIZE")); err != nil || n < 0 || n > 1000000 {
		bad("WORKER_WORKFLOW_CACHE_SIZE", get("WORKER_WORKFLOW_CACHE_SIZE"), "must be an integer between 0 and 1000000")
	} else {
		c.WorkerWorkflowCacheSize = n
	}
	for name, v := range map[string]string{"TEMPORAL_ADDRESS": c.TemporalAddress, "API_ADDR": c.APIAddr, "OPS_ADDR": c.OpsAddr, "WORKER_ADDR": c.WorkerAddr} {
		if _, port, ok := strings.Cut(v, ":"); !ok || port == "" {
			bad(name, v, "must be host:port (host may be empty)")
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad(name, v, "port must be 0-65535")
		}
	}
	if c.TemporalNamespace == "" {
		bad("TEMPORAL_NAMESPACE", c.TemporalNamespace, "must not be empty")
	}
	var err error
	if c.PublicURL, err = parseBaseURL(get("PUBLIC_URL")); err != nil {
		bad("PUBLIC_URL", get("PUBLIC_URL"), err.Error())
	}
	if c.JiraAuthURL, err = parseBaseURL(get("JIRA_AUTH_URL")); err != nil {
		bad("JIRA_AUTH_URL", get("JIRA_AUTH_URL"), err.Error())
	}
	if c.JiraAPIURL, err = parseBaseURL(get("JIRA_API_URL")); err != nil {
		bad("JIRA_API_URL", get("JIRA_API_URL"), err.Error())
	}
	if n, err := strconv.ParseInt(get("API_MAX_BODY_BYTES"), 10, 64); err != nil || n < 1024 || n > 64<<20 {
		bad("API_MAX_BODY_BYTES", get("API_MAX_BODY_BYTES"), "must be an integer between 1024 and 67108864")
	} else {
		c.APIMaxBodyBytes = n
	}
	if err := c.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL"))); err != nil {
		bad("LOG_LEVEL", get("LOG_LEVEL"), "must be debug, info, warn or error")
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("LOG_FORMAT", c.LogFormat, "must be json or text")
	}
	switch c.KMSProvider {
	case "local":
		if c.LocalKeyringDir == "" {
			bad("LOCAL_KEYRING_DIR", c.LocalKeyringDir, "must name a directory")
		}
	case "aws":
		if c.KMSKeyID == "" {
			bad("KMS_KEY_ID", c.KMSKeyID, "is required when KMS_PROVIDER=aws")
		}
		if c.AWSRegion == "" {
			bad("AWS_REGION", c.AWSRegion, "is required when KMS_PROVIDER=aws")
		}
	default:
		bad("KMS_PROVIDER", c.KMSProvider, "must be aws or local")
	}
	if c.KMSEndpoint != "" {
		if _, err := parseBaseURL(c.KMSEndpoint); err != nil {
			bad("KMS_ENDPOINT", c.KMSEndpoint, err.Error())
		}
	}
	if c.KeyCacheTTL, err = time.ParseDuration(get("KEY_CACHE_TTL")); err != nil || c.KeyCacheTTL <= 0 || c.KeyCacheTTL > 24*time.Hour {
		bad("KEY_CACHE_TTL", get("KEY_CACHE_TTL"), "must be a duration between 1ns and 24h, e.g. 5m")
	}
	if v := get("DATA_KEY_ROTATION_PERIOD"); v != "0" {
		if c.DataKeyRotationPeriod, err = time.ParseDuration(v); err != nil || c.DataKeyRotationPeriod < 24*time.Hour || c.DataKeyRotationPeriod > 87600*time.Hour {
			bad("DATA_KEY_ROTATION_PERIOD", v, "must be 0 (off) or a duration between 24h and 87600h, e.g. 8760h")
		}
	}
	if v := get("API_KEY_MAX_TTL"); v != "" && v != "0" {
		if c.APIKeyMaxTTL, err = time.ParseDuration(v); err != nil || c.APIKeyMaxTTL < time.Minute {
			bad("API_KEY_MAX_TTL", v, "must be empty, 0 (no maximum) or a duration of at least 1m, e.g. 2160h")
		}
	}
	if c.FindingReconcileInterval, err = time.ParseDuration(get("FINDING_RECONCILE_INTERVAL")); err != nil || c.FindingReconcileInterval < time.Second || c.FindingReconcileInterval > 24*time.Hour {
		bad("FINDING_RECONCILE_INTERVAL", get("FINDING_RECONCILE_INTERVAL"), "must be a duration between 1s and 24h, e.g. 15m")
	}
	if c.EvidenceRetention, err = time.ParseDuration(get("EVIDENCE_RETENTION")); err != nil || c.EvidenceRetention < 7*24*time.Hour {
		bad("EVIDENCE_RETENTION", get("EVIDENCE_RETENTION"), "must be a duration of at least 168h, e.g. 8760h")
	}
	if c.SupervisorInterval, err = time.ParseDuration(get("SUPERVISOR_INTERVAL")); err != nil || c.SupervisorInterval < 10*time.Second || c.SupervisorInterval > 24*time.Hour {
		bad("SUPERVISOR_INTERVAL", get("SUPERVISOR_INTERVAL"), "must be a duration between 10s and 24h, e.g. 5m")
	}
	if (c.JiraOAuthClientID == "") != (c.JiraOAuthClientSecret == "") {
		errs = append(errs, errors.New("JIRA_OAUTH_CLIENT_ID and JIRA_OAUTH_CLIENT_SECRET must be set together"))
	}
	if c.JiraEgressAllow, err = egress.ParseAllowList(get(egress.EnvVar)); err != nil {
		bad(egress.EnvVar, get(egress.EnvVar), err.Error())
	} else {
		// The Atlassian endpoints are called through the same policy: a value it refuses would
		// fail every OAuth connection at run time, so it fails start-up instead.
		policy := egress.New(c.JiraEgressAllow, egress.Options{})
		for _, name := range []string{"JIRA_AUTH_URL", "JIRA_API_URL"} {
			if err := policy.CheckStatic(get(name)); err != nil {
				bad(name, get(name), err.Error()+"; allow its host in "+egress.EnvVar)
			}
		}
	}
	if c.WebhookAllowedCIDRs, err = ParsePrefixes(get("WEBHOOK_ALLOWED_CIDRS")); err != nil {
		bad("WEBHOOK_ALLOWED_CIDRS", get("WEBHOOK_ALLOWED_CIDRS"), err.Error())
	}
	if c.TrustedProxies, err = ParsePrefixes(get("TRUSTED_PROXIES")); err != nil {
		bad("TRUSTED_PROXIES", get("TRUSTED_PROXIES"), err.Error())
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid configuration: %w", errors.Join(errs...))
	}
	return c, nil
}

// OAuthEnabled reports whether cloud_oauth connections can be created.
func (c *Config) OAuthEnabled() bool { return c.JiraOAuthClientID != "" }

// ParsePrefixes parses a comma-separated list of CIDRs or single addresses.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			a, err := netip.ParseAddr(part)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address or CIDR", part)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR", part)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func parseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("must be an absolute http(s) URL")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("must not have a query or fragment")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// NewLogger builds the process logger from the configuration.
func (c *Config) NewLogger() *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}
