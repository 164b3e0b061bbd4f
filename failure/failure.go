// Package failure says what kind of failure an error is, as the connection workflow handles it:
// the error types its activities fail with (temporal.ApplicationError types, also stored as the
// error kind of runs and connections), whether time can fix the failure, and how long to wait when
// Jira said so. The activities and the services below them (findingsync) classify with Classify;
// only the activities turn the result into a Temporal error, so this package and the services do
// not depend on Temporal.
package failure

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/seal"
)

// Error types of non-retryable and specially handled activity failures. The workflow switches on
// them; they are part of its contract with the activities and must not change.
const (
	// TypeReauthRequired: the grant is gone (invalid_grant) or the credentials are rejected after
	// a refresh; the connection must be re-authorized. Not retried.
	TypeReauthRequired = "reauth_required"
	// TypeConfig: a configuration problem (forbidden, unknown field, bad JQL, OAuth not
	// configured). Not retried until the configuration changes.
	TypeConfig = "config"
	// TypeRevoked: the connection was revoked; nothing more may be done with it. Not retried.
	TypeRevoked = "revoked"
	// TypeRateLimited: Jira said 429/503; retried after Retry-After (Failure.Delay).
	TypeRateLimited = "rate_limited"
	// TypeTransient: anything else (5xx, network, malformed response); retried with backoff.
	TypeTransient = "transient"
	// TypeInvalidInput: an activity was called with input it can never accept (missing ids, an
	// unknown status). Not retried: the calling code has to change.
	TypeInvalidInput = "invalid_input"
)

// Failure is a classified error.
type Failure struct {
	// Type is one of the Type constants.
	Type string
	// Retryable says whether trying again later may succeed.
	Retryable bool
	// Delay is how long to wait before trying again when Jira said so (Retry-After plus jitter);
	// zero leaves the wait to the caller's backoff.
	Delay time.Duration
	// Message is the error's text, bounded by MaxText. jira.Error, connections and seal errors
	// never contain credentials, and a jira.Error's text is a category rather than the network's
	// own, so it may be stored on runs and the connection and shown to the tenant.
	Message string
}

// maxRetryJitter is added to Jira's Retry-After, so that the many connections rate-limited by one
// Jira site at the same moment do not all come back at the same instant.
const maxRetryJitter = 2 * time.Second

// Classify maps an error from loading, unsealing or calling Jira, or from Postgres, to a Failure.
//
// The rule of thumb: retry what time can fix (5xx, network, malformed or oversized responses,
// rate limits, a token refresh that could not be persisted, a database hiccup); do not retry what
// only a person can fix — the grant is gone (re-auth), the configuration or permissions are wrong
// (config), or the connection was revoked.
func Classify(err error) Failure {
	f := Failure{Message: Truncate(err.Error(), MaxText)}
	var ie *inputError
	var ce *configError
	switch {
	case errors.As(err, &ie):
		f.Type = TypeInvalidInput
		return f
	case errors.Is(err, connections.ErrRevoked):
		f.Type = TypeRevoked
		return f
	case errors.As(err, &ce), errors.Is(err, connections.ErrNotFound), errors.Is(err, seal.ErrNoOrgKey),
		errors.Is(err, connections.ErrNoHTTPClient):
		f.Type = TypeConfig
		return f
	case errors.Is(err, seal.ErrOpen):
		// The stored credential cannot be opened (tampered, or sealed under another binding):
		// only new credentials fix that, which is exactly what re-authorization provides.
		f.Type = TypeReauthRequired
		return f
	}
	switch jira.KindOf(err) {
	case jira.KindReauthRequired, jira.KindUnauthorized:
		// Connections.Client always uses a refreshing token source, so an unauthorized that reaches
		// us already survived the client's refresh-and-retry: more retries would only burn the
		// rate-limit budget and, for OAuth, risk reusing a rotated refresh token.
		f.Type = TypeReauthRequired
	case jira.KindForbidden, jira.KindIssueCreateForbidden, jira.KindBadRequest, jira.KindConfig,
		jira.KindCustomFieldUnknown, jira.KindNotFound, jira.KindGone, jira.KindUnsupported,
		jira.KindTransitionUnavailable, jira.KindEgressDenied:
		// An egress denial (the site is, or now resolves to, an address the operator's policy
		// refuses) is configuration too: retrying cannot change the policy or the site's DNS.
		f.Type = TypeConfig
	case jira.KindRateLimited:
		f.Type = TypeRateLimited
		f.Retryable = true
		f.Delay = retryDelay(err)
	default:
		// KindServer, KindTransport, KindTLS, KindMalformedResponse, KindResponseTooLarge,
		// KindConflict, KindTokenPersist, context errors and everything that is not a Jira error
		// at all (database, KMS unwrap).
		f.Type = TypeTransient
		f.Retryable = true
		f.Delay = retryDelay(err)
	}
	return f
}

// retryDelay is Jira's Retry-After plus jitter, or zero when Jira named no wait.
func retryDelay(err error) time.Duration {
	if d := jira.RetryDelay(err); d > 0 {
		return d + rand.N(maxRetryJitter)
	}
	return 0
}

// inputError is input an activity can never accept.
type inputError struct{ msg string }

func (e *inputError) Error() string { return "invalid activity input: " + e.msg }

// InvalidInput returns an error that Classify types TypeInvalidInput.
func InvalidInput(msg string) error { return &inputError{msg: msg} }

// configError is a configuration the connector or the worker itself rejects.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// Misconfigured returns an error with text msg that Classify types TypeConfig: only a change of
// configuration (the tenant's or the operator's) can fix it. Compare with errors.Is against the
// returned value, or wrap it with %w.
func Misconfigured(msg string) error { return &configError{msg: msg} }

var (
	// ErrOAuthNotConfigured: an OAuth connection on a worker without JIRA_OAUTH_CLIENT_ID.
	// connections.Service reports it as an untyped error, so its callers detect the condition
	// themselves and use this typed one.
	ErrOAuthNotConfigured = Misconfigured("OAuth is not configured on this worker (JIRA_OAUTH_CLIENT_ID)")
	// ErrBadConfig marks configuration the connector itself rejects (e.g. an invalid site URL).
	ErrBadConfig = Misconfigured("invalid connection configuration")
)

// MaxText bounds error messages stored in Postgres and returned to the workflow.
const MaxText = 2000

// Truncate bounds free text stored on runs, connections and audit rows to n bytes, cut on a rune
// boundary and marked with "…".
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
