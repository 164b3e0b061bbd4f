package jira_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"golang.org/x/oauth2"
)

func TestScopes(t *testing.T) {
	for _, tc := range []struct {
		f    jira.Features
		want string
	}{
		{jira.Features{}, "read:jira-work read:jira-user offline_access"},
		{jira.Features{FindingSync: true}, "read:jira-work read:jira-user offline_access write:jira-work"},
		{jira.Features{DynamicWebhooks: true}, "read:jira-work read:jira-user offline_access manage:jira-webhook"},
		{jira.Features{FindingSync: true, DynamicWebhooks: true}, "read:jira-work read:jira-user offline_access write:jira-work manage:jira-webhook"},
	} {
		if got := strings.Join(jira.Scopes(tc.f), " "); got != tc.want {
			t.Errorf("Scopes(%+v) = %s", tc.f, got)
		}
	}
}

func TestAuthorizeURL(t *testing.T) {
	app := &jira.OAuthApp{ClientID: "cid", ClientSecret: jira.NewSecret("csecret"), RedirectURL: "https://app.example.com/oauth/callback"}
	raw, err := app.AuthorizeURL("st&ate=1", jira.Scopes(jira.Features{FindingSync: true}))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme+"://"+u.Host+u.Path != "https://auth.atlassian.com/authorize" {
		t.Errorf("endpoint %s", raw)
	}
	want := map[string]string{"audience": "api.atlassian.com", "client_id": "cid", "prompt": "consent", "response_type": "code",
		"redirect_uri": "https://app.example.com/oauth/callback", "state": "st&ate=1", "scope": "read:jira-work read:jira-user offline_access write:jira-work"}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	if strings.Contains(raw, "csecret") {
		t.Error("authorize URL carries the client secret")
	}
	for _, bad := range []func() (string, error){
		func() (string, error) { return app.AuthorizeURL("", []string{"read:jira-work"}) },
		func() (string, error) { return app.AuthorizeURL("s", nil) },
		func() (string, error) { return (&jira.OAuthApp{ClientID: "x"}).AuthorizeURL("s", []string{"a"}) },
	} {
		if _, err := bad(); jira.KindOf(err) != jira.KindConfig {
			t.Errorf("err = %v", err)
		}
	}
	if _, err := app.GatewayURL("../x"); jira.KindOf(err) != jira.KindConfig {
		t.Errorf("GatewayURL accepted a path")
	}
	if gw, _ := app.GatewayURL("35273b54-3f06-40d2-880f-dd28cf8daafa"); gw != "https://api.atlassian.com/ex/jira/35273b54-3f06-40d2-880f-dd28cf8daafa" {
		t.Errorf("gateway = %s", gw)
	}
}

func TestNormalizeSiteURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://Your-Domain.atlassian.net/":    "https://your-domain.atlassian.net",
		"your-domain.atlassian.net":             "https://your-domain.atlassian.net",
		"HTTPS://your-domain.atlassian.net:443": "https://your-domain.atlassian.net",
		"http://127.0.0.1:8080/jira/":           "http://127.0.0.1:8080/jira",
		"https://[::1]:8443":                    "https://[::1]:8443",
	} {
		if got, err := jira.NormalizeSiteURL(in); err != nil || got != want {
			t.Errorf("NormalizeSiteURL(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "ftp://x", "https://user:pw@x", "https://"} {
		if _, err := jira.NormalizeSiteURL(bad); err == nil {
			t.Errorf("NormalizeSiteURL(%q) accepted", bad)
		}
	}
}

func TestE2EOAuthSiteSelection(t *testing.T) {
	srv := jirasim.NewServer(jirasim.Options{Flavor: jirasim.Cloud, Logger: quiet(), ExtraSites: []jirasim.AccessibleResource{
		{ID: "11111111-1111-1111-1111-111111111111", Name: "other", URL: "https://other.atlassian.net", Scopes: []string{"read:jira-work"}},
	}})
	t.Cleanup(srv.Close)
	ctx := context.Background()
	app := oauthApp(srv)
	tokens, err := app.Exchange(ctx, consent(t, app, allScopes()))
	if err != nil {
		t.Fatal(err)
	}
	if tokens.Refresh.IsZero() || tokens.Expiry.IsZero() || !slices.Contains(tokens.Scopes, "write:jira-work") {
		t.Fatalf("tokens = %+v", tokens)
	}
	res, err := app.AccessibleResources(ctx, tokens.Access)
	if err != nil || len(res) != 2 || res[0].URL != "https://other.atlassian.net" {
		t.Fatalf("resources = %+v, %v", res, err)
	}
	// The unrelated site comes first; matching is on the normalized URL.
	id, err := app.CloudIDForSite(ctx, tokens.Access, strings.ToUpper(srv.URL[:4])+srv.URL[4:]+"/")
	if err != nil || id != srv.CloudID() {
		t.Fatalf("cloud id = %q, %v", id, err)
	}
	_, err = app.CloudIDForSite(ctx, tokens.Access, "https://not-granted.atlassian.net")
	je := kindIs(t, err, jira.KindReauthRequired)
	if !strings.Contains(je.Error(), "not-granted.atlassian.net") || !strings.Contains(je.Error(), "other.atlassian.net") {
		t.Errorf("err = %v", je)
	}
	// The authorization code is single use, and expires.
	code := consent(t, app, allScopes())
	if _, err := app.Exchange(ctx, code); err != nil {
		t.Fatal(err)
	}
	_, err = app.Exchange(ctx, code)
	kindIs(t, err, jira.KindBadRequest)
	code = consent(t, app, allScopes())
	srv.AdvanceClock(11 * time.Minute)
	_, err = app.Exchange(ctx, code)
	if je := kindIs(t, err, jira.KindBadRequest); strings.Contains(je.Error(), code) {
		t.Error("error leaks the code")
	}
	// A bad access token on accessible-resources.
	_, err = app.AccessibleResources(ctx, jira.NewSecret("nope"))
	kindIs(t, err, jira.KindReauthRequired)
}

func TestE2ETokenRotationUnderConcurrency(t *testing.T) {
	srv := startSim(t, jirasim.Cloud)
	seedSmall(srv)
	s := cloudOAuthSite(t, srv, allScopes())
	ctx := context.Background()
	initial := s.ts.Current()

	// Persisting must finish before anyone uses the new access token: while persist runs, no
	// Jira call may be made (everyone is waiting for the token).
	var persistViolations int
	s.store.hook = func() {
		n0 := srv.OperationCount(jirasim.OpMyself)
		time.Sleep(30 * time.Millisecond)
		if srv.OperationCount(jirasim.OpMyself) != n0 {
			persistViolations++
		}
	}
	// The access token now expires within the refresh margin (but Jira would still accept it).
	srv.AdvanceClock(59 * time.Minute)
	tokenCalls := srv.OperationCount(jirasim.OpToken)

	const workers = 64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.c.Myself(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("worker: %v", err)
	}
	if got := srv.OperationCount(jirasim.OpToken) - tokenCalls; got != 1 {
		t.Errorf("%d refreshes for %d concurrent callers, want exactly 1", got, workers)
	}
	if s.store.count() != 1 || persistViolations != 0 {
		t.Errorf("persisted %d times, %d calls during persist", s.store.count(), persistViolations)
	}
	cur := s.ts.Current()
	if cur.Access.Equal(initial.Access) || cur.Refresh.Equal(initial.Refresh) || !cur.Refresh.Equal(s.store.last().Refresh) {
		t.Error("rotated tokens are not the persisted ones")
	}
	if s.stats.ByOp()["oauth.refresh"] != 1 || s.stats.ByOp()["myself"] != workers {
		t.Errorf("stats = %v", s.stats.ByOp())
	}
	// The grant is still healthy: no invalid_grant was provoked and the old token was not reused.
	srv.AdvanceClock(59 * time.Minute)
	if _, err := s.c.Myself(ctx); err != nil {
		t.Fatalf("second rotation: %v", err)
	}
	if s.store.count() != 2 {
		t.Errorf("persisted %d times", s.store.count())
	}
	// oauth2.TokenSource view.
	tok, err := s.ts.Token()
	if err != nil || tok.AccessToken != s.ts.Current().Access.Reveal() || tok.Expiry.IsZero() || tok.TokenType != "Bearer" {
		t.Errorf("Token() = %v, %v", tok.Expiry, err)
	}
}

func TestE2E401RefreshesOnceAndRetries(t *testing.T) {
	srv := startSim(t, jirasim.Cloud)
	seedSmall(srv)
	s := cloudOAuthSite(t, srv, allScopes())
	ctx := context.Background()
	// Jira stops accepting the access token before our clock says it expires.
	srv.ExpireAccessTokens()
	const workers = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.c.ProjectCount(ctx); err != nil {
				mu.Lock()
				failures = append(failures, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("failures: %v", failures)
	}
	if srv.OperationCount(jirasim.OpToken) != 2 || s.store.count() != 1 { // 1 = code exchange
		t.Errorf("token calls %d, persisted %d", srv.OperationCount(jirasim.OpToken), s.store.count())
	}
	// Every caller whose first attempt was refused (401) retried exactly once; callers that
	// started after the refresh succeeded at once. Which is which depends on scheduling, so the
	// invariant is checked against what the simulator answered.
	refused := 0
	for _, r := range srv.Requests() {
		if r.Status == 401 && strings.Contains(r.Path, "/project/search") {
			refused++
		}
	}
	if got := s.stats.ByOp()["project.count"]; refused == 0 || got != workers+refused {
		t.Errorf("project.count calls = %d with %d refused, want %d", got, refused, workers+refused)
	}
}

func TestE2EPersistFailureDiscardsNewTokens(t *testing.T) {
	srv := startSim(t, jirasim.Cloud)
	seedSmall(srv)
	s := cloudOAuthSite(t, srv, allScopes())
	ctx := context.Background()
	dbDown := errors.New("postgres: connection refused")
	s.store.fail = dbDown
	before := s.ts.Current()
	srv.AdvanceClock(59 * time.Minute)
	_, err := s.c.Myself(ctx)
	je := kindIs(t, err, jira.KindTokenPersist)
	if !errors.Is(err, dbDown) || !jira.Retryable(je) {
		t.Errorf("err = %v", err)
	}
	if !s.ts.Current().Access.Equal(before.Access) || srv.OperationCount(jirasim.OpMyself) != 0 {
		t.Fatal("new token used although persisting failed")
	}
	// Storage is back: the old, still-stored refresh token works again within Atlassian's leeway.
	s.store.fail = nil
	if _, err := s.c.Myself(ctx); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if s.store.count() != 1 {
		t.Errorf("persisted %d", s.store.count())
	}
}

func TestE2EReauthAndConfigErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("revoked grant", func(t *testing.T) {
		srv := startSim(t, jirasim.Cloud)
		s := cloudOAuthSite(t, srv, allScopes())
		if srv.RevokeOAuthGrants(srv.AdminUser().Email) != 1 {
			t.Fatal("no grant revoked")
		}
		_, err := s.c.Myself(ctx)
		je := kindIs(t, err, jira.KindReauthRequired)
		if jira.Retryable(je) || !strings.Contains(je.Error(), "invalid_grant") {
			t.Errorf("err = %v", je)
		}
	})
	t.Run("refresh token reused outside the leeway", func(t *testing.T) {
		// Two token sources for one grant (what single-flight per connection prevents): the
		// second presents the already-rotated refresh token after the leeway, and Atlassian
		// revokes the whole family.
		srv := startSim(t, jirasim.Cloud)
		s := cloudOAuthSite(t, srv, allScopes())
		initial := s.ts.Current()
		if err := s.ts.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		srv.AdvanceClock(11 * time.Minute)
		rogue, _ := jira.NewTokenSource(jira.TokenSourceConfig{App: s.app, Initial: initial, Persist: (&tokenStore{}).persist})
		err := rogue.Refresh(ctx)
		kindIs(t, err, jira.KindReauthRequired)
		err = s.ts.Refresh(ctx)
		kindIs(t, err, jira.KindReauthRequired)
	})
	t.Run("wrong client secret", func(t *testing.T) {
		srv := startSim(t, jirasim.Cloud)
		s := cloudOAuthSite(t, srv, allScopes())
		bad := *s.app
		bad.ClientSecret = jira.NewSecret("not-the-secret")
		_, err := bad.Refresh(ctx, s.ts.Current().Refresh)
		je := kindIs(t, err, jira.KindConfig)
		if !strings.Contains(je.Error(), "access_denied") {
			t.Errorf("err = %v", je)
		}
		_, err = bad.Exchange(ctx, consent(t, &bad, allScopes()))
		kindIs(t, err, jira.KindConfig)
	})
	t.Run("scope not granted", func(t *testing.T) {
		srv := startSim(t, jirasim.Cloud)
		seedSmall(srv)
		s := cloudOAuthSite(t, srv, jira.Scopes(jira.Features{}))
		_, err := s.c.CreateIssue(ctx, jira.IssueInput{Project: "SEC", IssueType: "Bug", Summary: "x"})
		je := kindIs(t, err, jira.KindReauthRequired)
		if !strings.Contains(je.Error(), "scope does not match") {
			t.Errorf("err = %v", je)
		}
		// Reading still works with the read scopes.
		if _, err := s.c.ProjectCount(ctx); err != nil {
			t.Error(err)
		}
	})
	t.Run("no refresh token", func(t *testing.T) {
		srv := startSim(t, jirasim.Cloud)
		app := oauthApp(srv)
		tokens, err := app.Exchange(ctx, consent(t, app, []string{"read:jira-work", "read:jira-user"}))
		if err != nil || !tokens.Refresh.IsZero() {
			t.Fatalf("tokens %v, %v", tokens, err)
		}
		ts, _ := jira.NewTokenSource(jira.TokenSourceConfig{App: app, Initial: tokens, Persist: (&tokenStore{}).persist})
		srv.AdvanceClock(time.Hour)
		_, err = ts.TokenContext(ctx)
		kindIs(t, err, jira.KindReauthRequired)
	})
}

func TestE2EOAuthNeverLogsSecrets(t *testing.T) {
	srv := startSim(t, jirasim.Cloud)
	seedSmall(srv)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	app := oauthApp(srv)
	app.Logger = logger
	code := consent(t, app, allScopes())
	tokens, err := app.Exchange(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := app.CloudIDForSite(ctx, tokens.Access, srv.URL)
	gw, _ := app.GatewayURL(id)
	store := &tokenStore{}
	ts, _ := jira.NewTokenSource(jira.TokenSourceConfig{App: app, Initial: tokens, Persist: store.persist, Logger: logger})
	c, _ := jira.New(jira.Config{Flavor: jira.Cloud, BaseURL: gw, Auth: jira.OAuth(ts), Logger: logger})
	srv.AdvanceClock(59 * time.Minute)
	if _, err := c.Myself(ctx); err != nil {
		t.Fatal(err)
	}
	srv.RevokeOAuthGrants(srv.AdminUser().Email)
	_, err = c.Myself(ctx)
	logger.Info("state", "tokens", ts.Current(), "app", app, "err", err)
	_, secret := srv.OAuthClient()
	out := logs.String() + fmt.Sprintf("%v %+v %#v", err, err, ts.Current())
	for _, sec := range []string{code, tokens.Access.Reveal(), tokens.Refresh.Reveal(), store.last().Access.Reveal(), store.last().Refresh.Reveal(), secret} {
		if strings.Contains(out, sec) {
			t.Fatalf("secret %q… in logs/errors", sec[:8])
		}
	}
	if !strings.Contains(logs.String(), "oauth tokens rotated") {
		t.Error("rotation not logged")
	}
}

// With a plain oauth2.TokenSource (no forced refresh possible) a 401 is KindUnauthorized:
// retryable, because the source may refresh on its own by the next attempt.
func TestE2EGenericTokenSource401(t *testing.T) {
	srv := startSim(t, jirasim.Cloud)
	ctx := context.Background()
	tokens, err := srv.GrantOAuth(srv.AdminUser().Email, allScopes()...)
	if err != nil {
		t.Fatal(err)
	}
	src := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tokens.AccessToken, TokenType: "Bearer"})
	c, err := jira.New(jira.Config{Flavor: jira.Cloud, BaseURL: srv.GatewayURL(), Auth: jira.OAuth(src)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Myself(ctx); err != nil {
		t.Fatal(err)
	}
	srv.ExpireAccessTokens()
	_, err = c.Myself(ctx)
	if je := kindIs(t, err, jira.KindUnauthorized); !jira.Retryable(je) || strings.Contains(fmt.Sprintf("%+v", je), tokens.AccessToken) {
		t.Errorf("err = %+v", je)
	}
}

func TestE2EResponseTooLarge(t *testing.T) {
	srv := startSim(t, jirasim.DataCenter)
	if _, err := srv.Seed(1, jirasim.SeedSpec{Projects: 200, Issues: 10}); err != nil {
		t.Fatal(err)
	}
	c, err := jira.New(jira.Config{Flavor: jira.DataCenter, BaseURL: srv.URL, Auth: jira.PAT(jira.NewSecret(srv.PAT("svc"))), MaxResponseBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ProjectCount(context.Background())
	kindIs(t, err, jira.KindResponseTooLarge)
}
