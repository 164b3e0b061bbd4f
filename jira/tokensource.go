package jira

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// PersistFunc stores a freshly rotated token pair (sealed, atomically) before it is used. If it
// returns an error the new tokens are discarded and the error is returned to the caller: using an
// access token whose refresh token was never stored would strand the connection on the next
// refresh, while Atlassian's 10-minute reuse leeway lets a later attempt refresh again with the
// old, still-stored refresh token.
type PersistFunc func(ctx context.Context, t Tokens) error

// ExclusiveFunc runs refresh inside a critical section shared with every process that may refresh
// the same grant, so that a rotated refresh token is never presented twice. It calls refresh with
// the tokens stored when the section begins (another process may have rotated them since this one
// last looked); when refresh reports changed, ExclusiveFunc stores the new tokens before it leaves
// the section and returns them. If storing fails it returns the error and the new tokens are
// discarded, as with PersistFunc.
type ExclusiveFunc func(ctx context.Context, refresh func(ctx context.Context, stored Tokens) (next Tokens, changed bool, err error)) (Tokens, error)

// TokenSourceConfig configures NewTokenSource. Exactly one of Persist and Exclusive is set:
// Persist serializes refreshes inside this process only; Exclusive across processes.
type TokenSourceConfig struct {
	App       *OAuthApp
	Initial   Tokens
	Persist   PersistFunc
	Exclusive ExclusiveFunc
	// RefreshBefore refreshes this long before the access token expires (default 2 minutes), so
	// that a request does not leave with a token that dies in flight; for a token that lives less
	// than twice as long, the margin is half its lifetime, so that a token is never refreshed in the
	// first half of its life however short it is.
	RefreshBefore time.Duration
	// RefreshTimeout bounds one refresh-and-persist (default 30 seconds). The refresh runs under
	// its own context: once the token endpoint may have rotated the refresh token, the result must
	// be persisted even if the caller that started the refresh has given up.
	RefreshTimeout time.Duration
	Logger         *slog.Logger
}

// TokenSource supplies access tokens for one OAuth connection and refreshes them single-flight:
// however many goroutines need a token at once, at most one refresh is in flight, and the others
// wait for its result. Atlassian treats reuse of a rotated refresh token (outside a short leeway)
// as theft and revokes the whole grant, so concurrent refreshes must never happen.
//
// A TokenSource must be shared by everything in the process that uses the same connection.
// It implements oauth2.TokenSource.
type TokenSource struct {
	app       *OAuthApp
	exclusive ExclusiveFunc
	before    time.Duration
	timeout   time.Duration
	log       *slog.Logger

	group singleflight.Group

	mu  sync.Mutex
	cur Tokens
	gen uint64 // incremented by every successful refresh
}

// NewTokenSource returns a TokenSource starting from cfg.Initial.
func NewTokenSource(cfg TokenSourceConfig) (*TokenSource, error) {
	if cfg.App == nil {
		return nil, configError("oauth.token_source", "no OAuth app")
	}
	if (cfg.Persist == nil) == (cfg.Exclusive == nil) {
		return nil, configError("oauth.token_source", "exactly one of Persist and Exclusive must be set: rotated refresh tokens must be stored")
	}
	if cfg.Initial.Access.IsZero() && cfg.Initial.Refresh.IsZero() {
		return nil, configError("oauth.token_source", "no initial tokens")
	}
	ts := &TokenSource{
		app:       cfg.App,
		exclusive: cfg.Exclusive,
		before:    cfg.RefreshBefore,
		timeout:   cfg.RefreshTimeout,
		log:       cfg.Logger,
		cur:       cfg.Initial,
	}
	if ts.exclusive == nil {
		ts.exclusive = ts.inProcess(cfg.Persist)
	}
	if ts.before <= 0 {
		ts.before = 2 * time.Minute
	}
	if ts.timeout <= 0 {
		ts.timeout = 30 * time.Second
	}
	if ts.log == nil {
		ts.log = slog.New(slog.DiscardHandler)
	}
	return ts, nil
}

// Token implements oauth2.TokenSource. Prefer TokenContext, which honours cancellation.
func (ts *TokenSource) Token() (*oauth2.Token, error) {
	return ts.TokenContext(context.Background())
}

// TokenContext returns a valid token, refreshing first if it expires within RefreshBefore.
func (ts *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	if _, err := ts.access(ctx); err != nil {
		return nil, err
	}
	return ts.Current().oauth2Token(), nil
}

// Current returns the tokens in use (for inspection; they are Secrets).
func (ts *TokenSource) Current() Tokens {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.cur
}

// Refresh forces a refresh now (e.g. to test a connection's grant).
func (ts *TokenSource) Refresh(ctx context.Context) error {
	_, gen := ts.snapshot()
	return ts.refreshUntil(ctx, func(_ Tokens, g uint64) bool { return g == gen })
}

func (ts *TokenSource) snapshot() (Tokens, uint64) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.cur, ts.gen
}

// inProcess is the ExclusiveFunc of a source whose only refresher is itself: the stored tokens are
// the ones it holds, and persist stores a rotation.
func (ts *TokenSource) inProcess(persist PersistFunc) ExclusiveFunc {
	return func(ctx context.Context, refresh func(context.Context, Tokens) (Tokens, bool, error)) (Tokens, error) {
		stored, _ := ts.snapshot()
		next, changed, err := refresh(ctx, stored)
		if err != nil || !changed {
			return next, err
		}
		if err := persist(ctx, next); err != nil {
			return Tokens{}, err
		}
		return next, nil
	}
}

// stale reports whether t must be refreshed before use: it has no access token, or it is within
// its refresh margin of expiring.
func (ts *TokenSource) stale(t Tokens) bool {
	if t.Access.IsZero() {
		return true
	}
	return !t.Expiry.IsZero() && !ts.app.now().Before(t.Expiry.Add(-ts.margin(t)))
}

// margin is how long before its expiry t is refreshed: RefreshBefore, but never more than half of
// t's lifetime. A token issued with expires_in of two minutes or less is therefore not "stale at
// birth" (which made every call refresh), and a token is never refreshed in the first half of its
// life.
func (ts *TokenSource) margin(t Tokens) time.Duration {
	m := ts.before
	if !t.Issued.IsZero() && t.Expiry.After(t.Issued) {
		m = min(m, t.Expiry.Sub(t.Issued)/2)
	}
	return m
}

// access returns the current access token, refreshing it first if it is about to expire.
func (ts *TokenSource) access(ctx context.Context) (Secret, error) {
	t, _ := ts.snapshot()
	if !ts.stale(t) {
		return t.Access, nil
	}
	// Without a refresh token (offline_access not granted) there is nothing to refresh with:
	// use the access token for as long as it is actually valid.
	if t.Refresh.IsZero() && !t.Access.IsZero() && ts.app.now().Before(t.Expiry) {
		return t.Access, nil
	}
	if err := ts.refreshUntil(ctx, func(t Tokens, _ uint64) bool { return ts.stale(t) }); err != nil {
		return Secret{}, err
	}
	t, _ = ts.snapshot()
	return t.Access, nil
}

// forceRefresh refreshes because Jira refused rejected. If another goroutine has already replaced
// that token, nothing is refreshed.
func (ts *TokenSource) forceRefresh(ctx context.Context, rejected Secret) error {
	return ts.refreshUntil(ctx, func(t Tokens, _ uint64) bool { return t.Access.Equal(rejected) })
}

// refreshUntil refreshes while need reports true, joining an in-flight refresh when there is one.
// The loop runs at most twice: a caller that joined a refresh started for another reason (and that
// decided not to rotate) gets one refresh of its own.
func (ts *TokenSource) refreshUntil(ctx context.Context, need func(Tokens, uint64) bool) error {
	for range 2 {
		cur, gen := ts.snapshot()
		if !need(cur, gen) {
			return nil
		}
		ch := ts.group.DoChan("refresh", func() (any, error) { return nil, ts.rotate(ctx, gen) })
		select {
		case res := <-ch:
			if res.Err != nil {
				return res.Err
			}
		case <-ctx.Done():
			return fmt.Errorf("wait for oauth token refresh: %w", ctx.Err())
		}
	}
	return nil
}

// rotate replaces the current tokens, unless a refresh completed since generation seen: inside the
// exclusive section it takes the stored tokens when another process has already replaced the ones
// this source holds (and they are fresh), and otherwise refreshes with the stored refresh token,
// which is the latest.
func (ts *TokenSource) rotate(parent context.Context, seen uint64) error {
	cur, gen := ts.snapshot()
	if gen != seen {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), ts.timeout)
	defer cancel()
	var refreshErr error
	rotated := false
	next, err := ts.exclusive(ctx, func(ctx context.Context, stored Tokens) (Tokens, bool, error) {
		if !stored.Access.IsZero() && !stored.Access.Equal(cur.Access) && !ts.stale(stored) {
			return stored, false, nil
		}
		t, err := ts.app.Refresh(ctx, stored.Refresh)
		if err != nil {
			refreshErr = err
			return Tokens{}, false, err
		}
		rotated = true
		return t, true, nil
	})
	switch {
	case refreshErr != nil:
		ts.log.LogAttrs(ctx, slog.LevelWarn, "oauth refresh failed", slog.String("kind", string(KindOf(refreshErr))))
		return refreshErr
	case err != nil && rotated:
		ts.log.LogAttrs(ctx, slog.LevelError, "persisting rotated oauth tokens failed; new tokens discarded")
		return &Error{Kind: KindTokenPersist, Op: "oauth.refresh", Detail: "persist rotated tokens; new tokens discarded", Err: err}
	case err != nil:
		// The section could not be entered or the stored tokens not read: nothing was rotated, so
		// a later attempt is safe.
		return &Error{Kind: KindTokenPersist, Op: "oauth.refresh", Detail: "read stored tokens", Err: err}
	}
	ts.mu.Lock()
	ts.cur = next
	ts.gen++
	ts.mu.Unlock()
	if rotated {
		ts.log.LogAttrs(ctx, slog.LevelInfo, "oauth tokens rotated", slog.Time("expiry", next.Expiry))
	} else {
		ts.log.LogAttrs(ctx, slog.LevelInfo, "oauth tokens taken from storage (refreshed elsewhere)", slog.Time("expiry", next.Expiry))
	}
	return nil
}

// secretValues lists the live credentials for error-text scrubbing.
func (ts *TokenSource) secretValues() []string {
	t, _ := ts.snapshot()
	return []string{t.Access.Reveal(), t.Refresh.Reveal(), ts.app.ClientSecret.Reveal()}
}

var _ oauth2.TokenSource = (*TokenSource)(nil)
