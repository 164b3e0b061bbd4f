// Package connections is the domain of a Jira connection shared by the API and the activities:
// its kinds and statuses, its per-connection configuration (validated, with defaults), its
// credentials (only ever held sealed outside memory), and the factory that turns a stored
// connection into a ready Jira client — including the process-wide, single-flight OAuth token
// source that persists rotated refresh tokens before they are used.
package connections

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jiraconnect/jiraconnect/findings"
)

// Kind is how a connection authenticates.
type Kind string

// Connection kinds.
const (
	KindCloudOAuth    Kind = "cloud_oauth"    // Jira Cloud, OAuth 2.0 (3LO)
	KindCloudToken    Kind = "cloud_token"    // Jira Cloud, email + API token (Basic)
	KindDataCenterPAT Kind = "datacenter_pat" // Jira Data Center, personal access token (Bearer)
)

// ParseKind validates a kind.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindCloudOAuth, KindCloudToken, KindDataCenterPAT:
		return k, nil
	}
	return "", fmt.Errorf("must be one of cloud_oauth, cloud_token, datacenter_pat")
}

// Status is a connection's lifecycle state.
type Status string

// Statuses, matching the connections.status check constraint.
const (
	StatusPendingAuth Status = "pending_auth"
	StatusActive      Status = "active"
	StatusNeedsReauth Status = "needs_reauth"
	StatusRevoked     Status = "revoked"
)

// Duration is a time.Duration that reads and writes JSON as a Go duration string ("24h").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// DurationError reports a JSON value that is not a duration string. encoding/json does not say
// which field a custom unmarshaler failed on, so the message carries the offending value.
type DurationError struct{ Value string }

func (e *DurationError) Error() string {
	return fmt.Sprintf(`%s is not a duration such as "24h" or "90m"`, e.Value)
}

// UnmarshalJSON reads a duration string such as "24h" or "90m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &DurationError{Value: string(b)}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &DurationError{Value: strconv.Quote(s)}
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// DefaultResolvedJQL selects recently resolved security tickets: labelled security, in a done
// status category, with a resolution, resolved in the last 30 days. Status category and
// resolution are independent in Jira, so both are required (the strictest reading).
const DefaultResolvedJQL = `labels = "security" AND statusCategory = Done AND resolution IS NOT EMPTY AND resolved >= -30d ORDER BY resolved DESC`

// Limits on configuration values.
const (
	MinCadence        = 15 * time.Minute
	MaxCadence        = 7 * 24 * time.Hour
	MinStaleThreshold = time.Hour
	MaxStaleThreshold = 90 * 24 * time.Hour
	MaxSampleSize     = 100
	maxJQLLength      = 2000
)

// The schedule rule that keeps a healthy connection from ever going stale. A scheduled sync starts
// a cadence after the previous one began, moved by up to SyncJitterSpan either way; a sync against
// a healthy but slow Jira may take up to SyncRetryBudget with its retries; the stale deadline is
// the threshold after the previous success. So a threshold of at least StaleThresholdFloor — the
// cadence, the largest jitter and the retry budget — is always met by the next sync of a healthy
// connection, and a stale alert means something is wrong.
const (
	// MaxSyncJitter caps the scheduling jitter of any cadence.
	MaxSyncJitter = 10 * time.Minute
	// SyncRetryBudget bounds a sync with every retry its activity policy allows (attempts at their
	// full timeout plus the backoffs between them; a test keeps it in step with the policy).
	SyncRetryBudget = 25 * time.Minute
)

// SyncJitterSpan is the largest offset the scheduler adds to or takes from a cadence: a twentieth
// of it, at most MaxSyncJitter.
func SyncJitterSpan(cadence time.Duration) time.Duration { return min(cadence/20, MaxSyncJitter) }

// StaleThresholdFloor is the smallest stale threshold a cadence allows (see the schedule rule
// above): cadence + SyncJitterSpan(cadence) + SyncRetryBudget, and never less than
// MinStaleThreshold.
func StaleThresholdFloor(cadence time.Duration) time.Duration {
	return max(MinStaleThreshold, cadence+SyncJitterSpan(cadence)+SyncRetryBudget)
}

// Config is a connection's evidence-sync configuration, stored in connections.config.
type Config struct {
	// SyncCadence is the time between scheduled syncs (default 24h).
	SyncCadence Duration `json:"sync_cadence"`
	// StaleThreshold is how long after the last successful sync the connection counts as stale:
	// coverage degrades and an alert opens (default 48h).
	StaleThreshold Duration `json:"stale_threshold"`
	// ResolvedJQL selects the resolved security tickets sampled as evidence.
	ResolvedJQL string `json:"resolved_jql" text:"multiline"`
	// SampleSize is how many of those tickets are recorded per sync (default 25).
	SampleSize int `json:"sample_size"`
	// Remediation configures the security-remediation evidence (see RemediationConfig).
	Remediation RemediationConfig `json:"remediation"`
	// FindingSync, when set, pushes matching findings into Jira as issues and keeps their
	// statuses in sync both ways. It is set through its own endpoint, validated against Jira's
	// createmeta.
	FindingSync *findings.SyncConfig `json:"finding_sync,omitempty"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		SyncCadence:    Duration(24 * time.Hour),
		StaleThreshold: Duration(48 * time.Hour),
		ResolvedJQL:    DefaultResolvedJQL,
		SampleSize:     25,
		Remediation:    DefaultRemediationConfig(),
	}
}

// FieldError is a validation error naming the offending field (as the API spells it).
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Validate checks every field and returns the first problem as a *FieldError.
func (c Config) Validate() error {
	switch {
	case c.SyncCadence.D() < MinCadence || c.SyncCadence.D() > MaxCadence:
		return &FieldError{"sync_cadence", fmt.Sprintf("must be between %s and %s", MinCadence, MaxCadence)}
	case c.StaleThreshold.D() < MinStaleThreshold || c.StaleThreshold.D() > MaxStaleThreshold:
		return &FieldError{"stale_threshold", fmt.Sprintf("must be between %s and %s", MinStaleThreshold, MaxStaleThreshold)}
	case c.StaleThreshold.D() < StaleThresholdFloor(c.SyncCadence.D()):
		cadence := c.SyncCadence.D()
		return &FieldError{"stale_threshold", fmt.Sprintf("must be at least %s for a sync_cadence of %s: the cadence, plus up to %s "+
			"of scheduling jitter, plus %s for a sync and its retries; any less and a healthy connection goes stale between two syncs",
			StaleThresholdFloor(cadence), cadence, SyncJitterSpan(cadence), SyncRetryBudget)}
	case strings.TrimSpace(c.ResolvedJQL) == "":
		return &FieldError{"resolved_jql", "must not be empty"}
	case len(c.ResolvedJQL) > maxJQLLength:
		return &FieldError{"resolved_jql", fmt.Sprintf("must be at most %d characters", maxJQLLength)}
	case strings.ContainsAny(c.ResolvedJQL, "\x00\r\n"):
		return &FieldError{"resolved_jql", "must be a single line"}
	case c.SampleSize < 1 || c.SampleSize > MaxSampleSize:
		return &FieldError{"sample_size", fmt.Sprintf("must be between 1 and %d", MaxSampleSize)}
	}
	if err := c.Remediation.validate(); err != nil {
		return err
	}
	if c.FindingSync != nil {
		if err := c.FindingSync.Validate(); err != nil {
			var fe *findings.FieldError
			if errors.As(err, &fe) {
				return &FieldError{fe.Field, fe.Message}
			}
			return &FieldError{"finding_sync", err.Error()}
		}
	}
	return nil
}

// EffectiveStaleThreshold is the threshold staleness is judged by: the configured one, raised to
// StaleThresholdFloor for configurations stored before the floor was validated, so coverage and
// the connection's workflow agree on when a connection is stale.
func (c Config) EffectiveStaleThreshold() time.Duration {
	return max(c.StaleThreshold.D(), StaleThresholdFloor(c.SyncCadence.D()))
}

// ConfigPatch is a partial update; nil fields keep their value.
type ConfigPatch struct {
	SyncCadence    *Duration `json:"sync_cadence"`
	StaleThreshold *Duration `json:"stale_threshold"`
	ResolvedJQL    *string   `json:"resolved_jql" text:"multiline"`
	SampleSize     *int      `json:"sample_size"`
	// Remediation patches the security-remediation settings.
	Remediation *RemediationPatch `json:"remediation"`
}

// Apply returns c with the patch applied (not yet validated).
func (p ConfigPatch) Apply(c Config) Config {
	if p.SyncCadence != nil {
		c.SyncCadence = *p.SyncCadence
	}
	if p.StaleThreshold != nil {
		c.StaleThreshold = *p.StaleThreshold
	}
	if p.ResolvedJQL != nil {
		c.ResolvedJQL = strings.TrimSpace(*p.ResolvedJQL)
	}
	if p.SampleSize != nil {
		c.SampleSize = *p.SampleSize
	}
	if p.Remediation != nil {
		c.Remediation = p.Remediation.apply(c.Remediation)
	}
	return c
}

// ParseConfig decodes a stored configuration, filling defaults for fields written by older
// versions (a configuration stored without remediation settings gets DefaultRemediationConfig).
func ParseConfig(raw []byte) (Config, error) {
	c := DefaultConfig()
	if len(raw) == 0 {
		return c, nil
	}
	// Decoding into the defaults would merge a stored SLA map into the default one (encoding/json
	// adds to a non-nil map), bringing back priorities the configuration removed.
	c.Remediation.SLAs = nil
	if err := json.Unmarshal(raw, &c); err != nil {
		return Config{}, fmt.Errorf("decode connection config: %w", err)
	}
	if c.Remediation.SLAs == nil {
		c.Remediation.SLAs = DefaultRemediationSLAs()
	}
	return c, nil
}

// NormalizeSiteURL validates a Jira base URL's syntax and returns its canonical form: http or
// https, lower-case host, no query, fragment, credentials or trailing slash. A path is kept (Data
// Center context paths). Whether the destination may be reached — its addresses, and plain http
// at all — is the egress policy's decision (egress.Policy.CheckURL), not this function's.
func NormalizeSiteURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", errors.New("must be an absolute URL such as https://your-domain.atlassian.net")
	}
	if u.User != nil {
		return "", errors.New("must not contain credentials")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("must not have a query or fragment")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", errors.New("must be an https:// URL")
	}
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}
