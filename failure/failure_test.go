package failure

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/seal"
)

func TestClassify(t *testing.T) {
	jerr := func(kind jira.Kind, retryAfter time.Duration) error {
		return fmt.Errorf("sync: %w", &jira.Error{Kind: kind, Op: "search", Status: 400, RetryAfter: retryAfter})
	}
	for _, tc := range []struct {
		name      string
		err       error
		errType   string
		retryable bool
		minDelay  time.Duration
	}{
		{"reauth", jerr(jira.KindReauthRequired, 0), TypeReauthRequired, false, 0},
		{"unauthorized after refresh", jerr(jira.KindUnauthorized, 0), TypeReauthRequired, false, 0},
		{"forbidden", jerr(jira.KindForbidden, 0), TypeConfig, false, 0},
		{"bad request", jerr(jira.KindBadRequest, 0), TypeConfig, false, 0},
		{"custom field", jerr(jira.KindCustomFieldUnknown, 0), TypeConfig, false, 0},
		{"jira config", jerr(jira.KindConfig, 0), TypeConfig, false, 0},
		{"not found", jerr(jira.KindNotFound, 0), TypeConfig, false, 0},
		{"gone", jerr(jira.KindGone, 0), TypeConfig, false, 0},
		{"rate limited", jerr(jira.KindRateLimited, 5*time.Second), TypeRateLimited, true, 5 * time.Second},
		{"rate limited without Retry-After", jerr(jira.KindRateLimited, 0), TypeRateLimited, true, 0},
		{"server", jerr(jira.KindServer, 0), TypeTransient, true, 0},
		{"server with Retry-After", jerr(jira.KindServer, 3*time.Second), TypeTransient, true, 3 * time.Second},
		{"malformed", jerr(jira.KindMalformedResponse, 0), TypeTransient, true, 0},
		{"too large", jerr(jira.KindResponseTooLarge, 0), TypeTransient, true, 0},
		{"transport", jerr(jira.KindTransport, 0), TypeTransient, true, 0},
		{"tls", jerr(jira.KindTLS, 0), TypeTransient, true, 0},
		{"egress denied", jerr(jira.KindEgressDenied, 0), TypeConfig, false, 0},
		{"no guarded http client", fmt.Errorf("client: %w", connections.ErrNoHTTPClient), TypeConfig, false, 0},
		{"token persist", jerr(jira.KindTokenPersist, 0), TypeTransient, true, 0},
		{"revoked", fmt.Errorf("load: %w", connections.ErrRevoked), TypeRevoked, false, 0},
		{"not found connection", fmt.Errorf("load: %w", connections.ErrNotFound), TypeConfig, false, 0},
		{"oauth not configured", ErrOAuthNotConfigured, TypeConfig, false, 0},
		{"bad configuration", fmt.Errorf("%w: reconciliation query: x", ErrBadConfig), TypeConfig, false, 0},
		{"worker misconfigured", fmt.Errorf("supervise: %w", Misconfigured("no client")), TypeConfig, false, 0},
		{"unopenable credentials", fmt.Errorf("open: %w", &seal.OpenError{Err: errors.New("auth failed")}), TypeReauthRequired, false, 0},
		{"no org key", fmt.Errorf("open: %w", seal.ErrNoOrgKey), TypeConfig, false, 0},
		{"kms unwrap", fmt.Errorf("open: %w", seal.ErrUnwrap), TypeTransient, true, 0},
		{"invalid input", InvalidInput("x"), TypeInvalidInput, false, 0},
		{"database", errors.New("connection refused"), TypeTransient, true, 0},
		{"cancelled", context.Canceled, TypeTransient, true, 0},
	} {
		f := Classify(tc.err)
		if f.Type != tc.errType || f.Retryable != tc.retryable || f.Delay < tc.minDelay || f.Delay > tc.minDelay+maxRetryJitter ||
			(tc.minDelay == 0 && f.Delay != 0) || f.Message != tc.err.Error() {
			t.Errorf("%s: %+v, want type %s retryable %t delay ≥ %s", tc.name, f, tc.errType, tc.retryable, tc.minDelay)
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdef", 3, "abc…"},
		{"aé", 2, "a…"}, // é is two bytes: the cut moves back to the rune boundary
		{"ééé", 3, "é…"},
	} {
		if got := Truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
	long := Classify(errors.New(string(make([]byte, MaxText+10))))
	if len(long.Message) != MaxText+len("…") {
		t.Errorf("a long error's message is %d bytes, want %d", len(long.Message), MaxText+len("…"))
	}
}
