package activities

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/seal"
)

// failure is a classified activity failure: the Temporal error type the workflow switches on,
// whether Temporal may retry it, and how long to wait when Jira said so.
type failure struct {
	errType   string
	retryable bool
	delay     time.Duration
	msg       string
}

// maxRetryJitter is added to Jira's Retry-After, so that the many connections rate-limited by one
// Jira site at the same moment do not all come back at the same instant.
const maxRetryJitter = 2 * time.Second

// classify maps an error from loading, unsealing or calling Jira to the contract's error types.
//
// The rule of thumb: retry what time can fix (5xx, network, malformed or oversized responses,
// rate limits, a token refresh that could not be persisted, a database hiccup); do not retry what
// only a person can fix — the grant is gone (re-auth), the configuration or permissions are wrong
// (config), or the connection was revoked.
func classify(err error) failure {
	f := failure{msg: truncate(err.Error(), maxErrorText)}
	var ie *inputError
	switch {
	case errors.As(err, &ie):
		f.errType = ErrTypeInvalidInput
		return f
	case errors.Is(err, connections.ErrRevoked):
		f.errType = ErrTypeRevoked
		return f
	case errors.Is(err, connections.ErrNotFound), errors.Is(err, errOAuthNotConfigured), errors.Is(err, seal.ErrNoOrgKey),
		errors.Is(err, errBadConfig), errors.Is(err, connections.ErrNoHTTPClient), errors.Is(err, errNoWorkflowClient):
		f.errType = ErrTypeConfig
		return f
	case errors.Is(err, seal.ErrOpen):
		// The stored credential cannot be opened (tampered, or sealed under another binding):
		// only new credentials fix that, which is exactly what re-authorization provides.
		f.errType = ErrTypeReauthRequired
		return f
	}
	switch jira.KindOf(err) {
	case jira.KindReauthRequired, jira.KindUnauthorized:
		// Connections.Client always uses a refreshing token source, so an unauthorized that reaches
		// us already survived the client's refresh-and-retry: more retries would only burn the
		// rate-limit budget and, for OAuth, risk reusing a rotated refresh token.
		f.errType = ErrTypeReauthRequired
	case jira.KindForbidden, jira.KindIssueCreateForbidden, jira.KindBadRequest, jira.KindConfig,
		jira.KindCustomFieldUnknown, jira.KindNotFound, jira.KindGone, jira.KindUnsupported,
		jira.KindTransitionUnavailable, jira.KindEgressDenied:
		// An egress denial (the site is, or now resolves to, an address the operator's policy
		// refuses) is configuration too: retrying cannot change the policy or the site's DNS.
		f.errType = ErrTypeConfig
	case jira.KindRateLimited:
		f.errType = ErrTypeRateLimited
		f.retryable = true
		if d := jira.RetryDelay(err); d > 0 {
			f.delay = d + rand.N(maxRetryJitter)
		}
	default:
		// KindServer, KindTransport, KindTLS, KindMalformedResponse, KindResponseTooLarge,
		// KindConflict, KindTokenPersist, context errors and everything that is not a Jira error
		// at all (database, KMS unwrap).
		f.errType = ErrTypeTransient
		f.retryable = true
		if d := jira.RetryDelay(err); d > 0 {
			f.delay = d + rand.N(maxRetryJitter)
		}
	}
	return f
}

// applicationError turns a classified failure into the error an activity returns. The message is
// the error's own text: jira.Error, connections and seal errors never contain credentials, and a
// jira.Error's text is a category rather than the network's own (no resolved addresses, no
// non-Jira response bodies), so it may be stored on runs and the connection and shown to the
// tenant. The cause is deliberately not attached, so nothing beyond that text enters workflow
// history.
func (f failure) applicationError() error {
	return temporal.NewApplicationErrorWithOptions(f.msg, f.errType, temporal.ApplicationErrorOptions{
		NonRetryable:   !f.retryable,
		NextRetryDelay: f.delay,
	})
}

// activityError classifies err and returns it as a temporal.ApplicationError. A context error of
// the activity's own context is returned as is, so that Temporal reports a cancelled activity as
// cancelled rather than as failed.
func activityError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	return classify(err).applicationError()
}

// inputError is input an activity can never accept.
type inputError struct{ msg string }

func (e *inputError) Error() string { return "invalid activity input: " + e.msg }

func invalidInput(msg string) error { return &inputError{msg: msg} }

var (
	// errOAuthNotConfigured: an OAuth connection on a worker without JIRA_OAUTH_CLIENT_ID.
	// connections.Service reports it as an untyped error, so the activities detect the condition
	// themselves and use this typed one.
	errOAuthNotConfigured = errors.New("OAuth is not configured on this worker (JIRA_OAUTH_CLIENT_ID)")
	// errBadConfig marks configuration the connector itself rejects (e.g. an invalid site URL).
	errBadConfig = errors.New("invalid connection configuration")
)
