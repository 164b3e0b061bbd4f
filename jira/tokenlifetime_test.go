package jira_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// TestShortTokenLifetimes: the refresh margin is min(2 minutes, half the lifetime), so a token
// issued with a short expires_in is not stale at birth (which made every call refresh: a 4-call
// sync made 9 refreshes), is never refreshed in the first half of its life, and is refreshed once
// when its margin is reached.
func TestShortTokenLifetimes(t *testing.T) {
	t.Parallel()
	for _, lifetime := range []time.Duration{20 * time.Second, 150 * time.Second, time.Hour} {
		t.Run(fmt.Sprint(lifetime), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := jirasim.NewServer(jirasim.Options{Flavor: jirasim.Cloud, Logger: quiet(), RandSeed: 1, AccessTokenTTL: lifetime})
			t.Cleanup(srv.Close)
			seedSmall(srv)
			s := cloudOAuthSite(t, srv, allScopes())
			margin := min(2*time.Minute, lifetime/2)

			sync := func() {
				t.Helper()
				_, err := s.c.ProjectCount(ctx)
				require.NoError(t, err)
				_, err = s.c.Myself(ctx)
				require.NoError(t, err)
				_, err = s.c.ProjectCount(ctx)
				require.NoError(t, err)
				_, err = s.c.Myself(ctx)
				require.NoError(t, err)
			}
			sync()
			assert.Equal(t, 0, s.store.count(), "a token just issued was refreshed")

			srv.AdvanceClock(lifetime - margin - time.Second)
			sync()
			assert.Equal(t, 0, s.store.count(), "refreshed before the margin")

			srv.AdvanceClock(2 * time.Second)
			sync()
			assert.Equal(t, 1, s.store.count(), "one refresh once the margin is reached")
			// The new token is as fresh as the first: the next sync refreshes nothing.
			sync()
			assert.Equal(t, 1, s.store.count())
			issued := s.ts.Current().Issued
			assert.False(t, issued.IsZero(), "the token records when it was issued")
		})
	}
}

// TestTokensWithoutIssuedUseTheDefaultMargin: tokens stored before Issued was recorded keep the
// two-minute margin.
func TestTokensWithoutIssuedUseTheDefaultMargin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := startSim(t, jirasim.Cloud)
	seedSmall(srv)
	app := oauthApp(srv)
	tokens, err := app.Exchange(ctx, consent(t, app, allScopes()))
	require.NoError(t, err)
	tokens.Issued = time.Time{}
	store := &tokenStore{}
	ts, err := jira.NewTokenSource(jira.TokenSourceConfig{App: app, Initial: tokens, Persist: store.persist, Logger: quiet()})
	require.NoError(t, err)
	srv.AdvanceClock(time.Hour - 2*time.Minute - time.Second)
	_, err = ts.TokenContext(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, store.count())
	srv.AdvanceClock(2 * time.Second)
	_, err = ts.TokenContext(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, store.count())
}
