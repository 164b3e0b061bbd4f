package jira_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// These tests run the client over real HTTP against the simulator (jirasim), one site per test.

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startSim(t testing.TB, flavor jirasim.Flavor) *jirasim.Server {
	t.Helper()
	srv := jirasim.NewServer(jirasim.Options{Flavor: flavor, Logger: quiet(), RandSeed: 1})
	t.Cleanup(srv.Close)
	return srv
}

// site is one configured connection to a simulated site.
type site struct {
	name  string
	srv   *jirasim.Server
	c     *jira.Client
	stats *jira.CallStats
	// OAuth only.
	app   *jira.OAuthApp
	ts    *jira.TokenSource
	store *tokenStore
	// secrets the connection holds, for leak assertions.
	secrets []string
}

// tokenStore is the persistence callback of a connection: it records every rotated pair.
type tokenStore struct {
	mu    sync.Mutex
	saved []jira.Tokens
	fail  error
	hook  func()
}

func (s *tokenStore) persist(_ context.Context, t jira.Tokens) error {
	if s.hook != nil {
		s.hook()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.saved = append(s.saved, t)
	return nil
}

func (s *tokenStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.saved)
}

func (s *tokenStore) last() jira.Tokens {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saved[len(s.saved)-1]
}

const botEmail = "bot@example.com"

func cloudTokenSite(t testing.TB, srv *jirasim.Server) *site {
	t.Helper()
	tok := srv.APIToken(botEmail)
	stats := &jira.CallStats{}
	c, err := jira.New(jira.Config{Flavor: jira.Cloud, BaseURL: srv.URL, Auth: jira.APIToken(botEmail, jira.NewSecret(tok)), Stats: stats, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return &site{name: "cloud-api-token", srv: srv, c: c, stats: stats, secrets: []string{tok}}
}

func dcSite(t testing.TB, srv *jirasim.Server) *site {
	t.Helper()
	pat := srv.PAT("svc-jiraconnect")
	stats := &jira.CallStats{}
	c, err := jira.New(jira.Config{Flavor: jira.DataCenter, BaseURL: srv.URL, Auth: jira.PAT(jira.NewSecret(pat)), Stats: stats, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return &site{name: "datacenter-pat", srv: srv, c: c, stats: stats, secrets: []string{pat}}
}

func oauthApp(srv *jirasim.Server) *jira.OAuthApp {
	id, secret := srv.OAuthClient()
	return &jira.OAuthApp{
		ClientID: id, ClientSecret: jira.NewSecret(secret), RedirectURL: "https://app.example.com/oauth/callback",
		AuthBaseURL: srv.URL, APIBaseURL: srv.URL, Logger: quiet(), Now: srv.Now,
	}
}

// consent runs the browser leg of 3LO: follows AuthorizeURL to the redirect and returns the code.
func consent(t testing.TB, app *jira.OAuthApp, scopes []string) string {
	t.Helper()
	u, err := app.AuthorizeURL("state-123", scopes)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize answered %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if loc.Query().Get("state") != "state-123" || loc.Query().Get("code") == "" {
		t.Fatalf("callback %s", loc)
	}
	return loc.Query().Get("code")
}

// cloudOAuthSite performs the whole 3LO setup: consent, code exchange, cloudid lookup, token
// source with persistence, client on the gateway.
func cloudOAuthSite(t testing.TB, srv *jirasim.Server, scopes []string) *site {
	t.Helper()
	ctx := context.Background()
	app := oauthApp(srv)
	code := consent(t, app, scopes)
	tokens, err := app.Exchange(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	cloudID, err := app.CloudIDForSite(ctx, tokens.Access, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := app.GatewayURL(cloudID)
	if err != nil {
		t.Fatal(err)
	}
	store := &tokenStore{}
	ts, err := jira.NewTokenSource(jira.TokenSourceConfig{App: app, Initial: tokens, Persist: store.persist, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	stats := &jira.CallStats{}
	app.Stats = stats
	c, err := jira.New(jira.Config{Flavor: jira.Cloud, BaseURL: gw, SiteURL: srv.URL, Auth: jira.OAuth(ts), Stats: stats, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	_, secret := srv.OAuthClient()
	return &site{name: "cloud-oauth", srv: srv, c: c, stats: stats, app: app, ts: ts, store: store,
		secrets: []string{tokens.Access.Reveal(), tokens.Refresh.Reveal(), secret, code}}
}

func allScopes() []string {
	return jira.Scopes(jira.Features{FindingSync: true, DynamicWebhooks: true})
}

// allSites starts one simulator per connection kind, seeded by seed.
func allSites(t testing.TB, seed func(*jirasim.Server)) []*site {
	t.Helper()
	cloud1 := startSim(t, jirasim.Cloud)
	seed(cloud1)
	cloud2 := startSim(t, jirasim.Cloud)
	seed(cloud2)
	dc := startSim(t, jirasim.DataCenter)
	seed(dc)
	return []*site{cloudTokenSite(t, cloud1), cloudOAuthSite(t, cloud2, allScopes()), dcSite(t, dc)}
}

func kindIs(t testing.TB, err error, want jira.Kind) *jira.Error {
	t.Helper()
	var je *jira.Error
	if !errors.As(err, &je) || je.Kind != want {
		t.Fatalf("err = %v, want kind %s", err, want)
	}
	return je
}
