package jira

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Kind classifies a failure so that callers (Temporal activities) can decide between retrying,
// surfacing a configuration problem and asking the user to re-authorize, without parsing messages.
type Kind string

// The error kinds. Their string values are stable: activities use them as Temporal error types and
// the API shows them to users.
const (
	// KindUnauthorized is a 401 that a token refresh may fix: an OAuth request whose 401 could not
	// be retried in the same call. The token source has already been told to refresh, so a retry
	// of the activity uses a new access token.
	KindUnauthorized Kind = "unauthorized"
	// KindReauthRequired means the credential is dead and only the user can fix it: the refresh
	// token was rejected (invalid_grant / unauthorized_client), a fresh OAuth token was still
	// refused, or a static API token / PAT was refused. Do not retry; wait for re-authorization.
	KindReauthRequired Kind = "reauth_required"
	// KindForbidden is a 403 outside issue creation: missing permission or scope.
	KindForbidden Kind = "forbidden"
	// KindIssueCreateForbidden is a 403 from issue creation: the account may not create issues in
	// the configured project. A configuration error to surface, not to retry.
	KindIssueCreateForbidden Kind = "issue_create_forbidden"
	// KindCustomFieldUnknown is a custom field the site does not know or will not accept on the
	// screen: a 400 whose per-field error for a customfield_ id says it cannot be set / is unknown,
	// or a 404 about a custom field. A bad value for a known custom field (an option that does not
	// exist) is KindBadRequest; Error.CustomFields names the field in both cases.
	KindCustomFieldUnknown Kind = "customfield_unknown"
	// KindNotFound is a 404. Jira answers 404 both for missing and for invisible resources.
	KindNotFound Kind = "not_found"
	// KindBadRequest is any other 4xx the caller caused (400, 413, 422 …).
	KindBadRequest Kind = "bad_request"
	// KindGone is a 410: the endpoint was removed (e.g. /rest/api/3/search).
	KindGone Kind = "gone"
	// KindConflict is a 409 conflicting update; retrying later may succeed.
	KindConflict Kind = "conflict"
	// KindRateLimited is a 429, or a 503 that carries Retry-After. RetryAfter holds the delay.
	KindRateLimited Kind = "rate_limited"
	// KindServer is a 5xx (without Retry-After on 503).
	KindServer Kind = "server_error"
	// KindMalformedResponse is a success status whose body is not what the API documents.
	KindMalformedResponse Kind = "malformed_response"
	// KindResponseTooLarge is a response body larger than Config.MaxResponseBytes.
	KindResponseTooLarge Kind = "response_too_large"
	// KindTransport is a network failure, a timeout or a body cut short. Its message says only
	// which (the host name does not resolve, timed out, could not connect); the dialer's and
	// resolver's own text, which names addresses and ports, is logged, never put in the message.
	KindTransport Kind = "transport"
	// KindTLS is a failed TLS handshake: a certificate the client does not trust or that does not
	// match the host, or a site that does not speak TLS. Retried like KindTransport (certificates
	// get fixed and MITM boxes come and go); the message says which, without certificate details.
	KindTLS Kind = "tls_error"
	// KindEgressDenied is a destination the server's egress policy refuses (a private, loopback,
	// link-local or otherwise non-public address, or plain http to an unlisted host): nothing was
	// sent. Not retryable: only the operator's policy or the site's address can change it.
	KindEgressDenied Kind = "egress_denied"
	// KindConfig is a configuration mistake on our side: bad base URL, wrong OAuth client secret
	// (access_denied on refresh), a site the grant does not cover, invalid input to this package.
	KindConfig Kind = "config"
	// KindTransitionUnavailable means no transition from the issue's current status reaches the
	// requested status.
	KindTransitionUnavailable Kind = "transition_unavailable"
	// KindTokenPersist means rotated OAuth tokens could not be stored, so they were not used.
	// Retrying soon is safe: Atlassian accepts the previous refresh token within a short leeway.
	KindTokenPersist Kind = "token_persist_failed"
	// KindUnsupported is an operation this Jira flavor does not offer (e.g. dynamic webhooks on
	// Data Center).
	KindUnsupported Kind = "unsupported"
)

// Error is the error type returned by every operation of this package.
//
// Its message is built only from the operation, the request method and path (never the query,
// headers or body), a category of what went wrong and Jira's own error messages (an answer in
// Jira's error JSON), with every credential the client knows replaced by [REDACTED]; so it is
// safe to log, store on a run and show to the tenant. It never holds the dialer's, resolver's or
// TLS stack's own text (addresses, ports, certificate names), a redirect's target or the body of
// an answer that is not Jira's error JSON: those details are logged by the client instead.
type Error struct {
	Kind   Kind
	Op     string // operation name, as counted in CallStats ("search", "issue.create", …)
	Method string
	Path   string // URL path without query
	Status int    // HTTP status; 0 when no response was received

	// Messages are Jira's errorMessages; FieldErrors its per-field errors map. For an error body
	// that is not Jira's (or Atlassian's) error JSON, Messages only describes it (content type
	// and size); its text is logged, not kept.
	Messages    []string
	FieldErrors map[string]string

	// RetryAfter is how long Jira asked us to wait (Retry-After, else Beta-Retry-After), for
	// KindRateLimited and for 5xx responses that carry it.
	RetryAfter time.Duration
	// RateLimitReason is RateLimit-Reason (e.g. jira-burst-based, jira-per-issue-on-write).
	RateLimitReason string

	// Detail is extra context written by this package (e.g. the reachable statuses of a
	// transition). It never contains credentials.
	Detail string

	// Err is the underlying cause (transport error, JSON syntax error, context error …).
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("jira ")
	b.WriteString(e.Op)
	if e.Method != "" {
		b.WriteString(": ")
		b.WriteString(e.Method)
		b.WriteByte(' ')
		b.WriteString(e.Path)
	}
	b.WriteString(": ")
	if e.Status != 0 {
		fmt.Fprintf(&b, "%d ", e.Status)
	}
	b.WriteString(string(e.Kind))
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if len(e.Messages) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(e.Messages, "; "))
	}
	if len(e.FieldErrors) > 0 {
		keys := make([]string, 0, len(e.FieldErrors))
		for k := range e.FieldErrors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(" (")
		for i, k := range keys {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(e.FieldErrors[k])
		}
		b.WriteString(")")
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s", e.RetryAfter)
		if e.RateLimitReason != "" {
			b.WriteString(", reason ")
			b.WriteString(e.RateLimitReason)
		}
		b.WriteString(")")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrKind) style checks work against the Kind sentinels below.
func (e *Error) Is(target error) bool {
	k, ok := target.(kindSentinel)
	return ok && Kind(k) == e.Kind
}

// CustomFields returns the customfield_ ids named in the per-field errors, sorted.
func (e *Error) CustomFields() []string {
	var ids []string
	for k := range e.FieldErrors {
		if strings.HasPrefix(k, "customfield_") {
			ids = append(ids, k)
		}
	}
	sort.Strings(ids)
	return ids
}

// kindSentinel lets errors.Is(err, jira.ErrReauthRequired) work without a type assertion.
type kindSentinel Kind

func (k kindSentinel) Error() string { return "jira: " + string(k) }

// Sentinels for errors.Is. errors.Is(err, ErrRateLimited) is true for any *Error of that kind.
var (
	ErrUnauthorized          error = kindSentinel(KindUnauthorized)
	ErrReauthRequired        error = kindSentinel(KindReauthRequired)
	ErrForbidden             error = kindSentinel(KindForbidden)
	ErrIssueCreateForbidden  error = kindSentinel(KindIssueCreateForbidden)
	ErrCustomFieldUnknown    error = kindSentinel(KindCustomFieldUnknown)
	ErrNotFound              error = kindSentinel(KindNotFound)
	ErrRateLimited           error = kindSentinel(KindRateLimited)
	ErrTransitionUnavailable error = kindSentinel(KindTransitionUnavailable)
	ErrConfig                error = kindSentinel(KindConfig)
	ErrEgressDenied          error = kindSentinel(KindEgressDenied)
)

// ErrPageLimit is returned by the paging helpers when the page budget ran out before the last page:
// the caller got a partial result and must not treat it as complete.
var ErrPageLimit = errors.New("jira: page limit reached before the last page")

// KindOf returns the Kind of the first *Error in err's chain, or "" when there is none. A bare
// context cancellation or deadline is reported as KindTransport.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return KindTransport
	}
	return ""
}

// Retryable reports whether retrying the same call later can succeed without anyone changing
// configuration or credentials. Activities map false to a non-retryable Temporal error.
func Retryable(err error) bool {
	switch KindOf(err) {
	case KindRateLimited, KindServer, KindTransport, KindTLS, KindConflict, KindUnauthorized, KindTokenPersist:
		return true
	}
	return false
}

// RetryDelay returns the delay Jira asked for (Retry-After), or 0 when it did not say.
func RetryDelay(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}
