package jira

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/oauth2"
)

// Auth is how a Client authenticates. Build one with APIToken, PAT or OAuth. The interface is
// sealed (its methods are unexported) so that every implementation is known to redact its
// credentials and to follow the client's 401 handling.
type Auth interface {
	// authorize sets the Authorization header and returns the credential it used, so that a 401
	// can refresh exactly the token that was refused.
	authorize(ctx context.Context, req *http.Request) (used Secret, err error)
	// refreshAfter401 is called once when Jira answers 401. retry reports whether a new credential
	// is now available so that repeating the request can succeed.
	refreshAfter401(ctx context.Context, rejected Secret) (retry bool, err error)
	// secretValues lists every credential string this Auth could put on the wire, so that error
	// text can be scrubbed of them.
	secretValues() []string
	// scheme names the auth kind for logs ("api_token", "pat", "oauth").
	scheme() string
}

// APIToken authenticates to Jira Cloud with an Atlassian account email and API token (HTTP Basic),
// against the site URL (or the api.atlassian.com gateway for scoped tokens).
func APIToken(email string, token Secret) Auth {
	return basicAuth{email: email, token: token}
}

type basicAuth struct {
	email string
	token Secret
}

func (a basicAuth) header() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(a.email+":"+a.token.Reveal()))
}

func (a basicAuth) authorize(_ context.Context, req *http.Request) (Secret, error) {
	if a.email == "" || a.token.IsZero() {
		return Secret{}, errors.New("api token auth needs an email and a token")
	}
	req.Header.Set("Authorization", a.header())
	return a.token, nil
}

func (basicAuth) refreshAfter401(context.Context, Secret) (bool, error) { return false, nil }

func (a basicAuth) secretValues() []string {
	return []string{a.token.Reveal(), a.header()[len("Basic "):]}
}

func (basicAuth) scheme() string { return "api_token" }

// PAT authenticates to Jira Data Center with a personal access token (Bearer).
func PAT(token Secret) Auth {
	return bearerAuth{token: token}
}

type bearerAuth struct{ token Secret }

func (a bearerAuth) authorize(_ context.Context, req *http.Request) (Secret, error) {
	if a.token.IsZero() {
		return Secret{}, errors.New("personal access token is empty")
	}
	req.Header.Set("Authorization", "Bearer "+a.token.Reveal())
	return a.token, nil
}

func (bearerAuth) refreshAfter401(context.Context, Secret) (bool, error) { return false, nil }
func (a bearerAuth) secretValues() []string                              { return []string{a.token.Reveal()} }
func (bearerAuth) scheme() string                                        { return "pat" }

// OAuth authenticates with OAuth 2.0 (3LO) access tokens from src, sent as Bearer to the
// api.atlassian.com gateway. With a *TokenSource the client refreshes on 401 and retries once;
// any other oauth2.TokenSource is used as is (a 401 is then reported as KindUnauthorized).
func OAuth(src oauth2.TokenSource) Auth {
	return oauthAuth{src: src}
}

type oauthAuth struct{ src oauth2.TokenSource }

func (a oauthAuth) authorize(ctx context.Context, req *http.Request) (Secret, error) {
	if a.src == nil {
		return Secret{}, errors.New("oauth auth has no token source")
	}
	if ts, ok := a.src.(*TokenSource); ok {
		tok, err := ts.access(ctx)
		if err != nil {
			return Secret{}, err
		}
		req.Header.Set("Authorization", "Bearer "+tok.Reveal())
		return tok, nil
	}
	t, err := a.src.Token()
	if err != nil {
		return Secret{}, fmt.Errorf("get oauth access token: %w", err)
	}
	if t.AccessToken == "" {
		return Secret{}, errors.New("oauth token source returned an empty access token")
	}
	req.Header.Set("Authorization", "Bearer "+t.AccessToken)
	return NewSecret(t.AccessToken), nil
}

func (a oauthAuth) refreshAfter401(ctx context.Context, rejected Secret) (bool, error) {
	ts, ok := a.src.(*TokenSource)
	if !ok {
		return false, nil
	}
	if err := ts.forceRefresh(ctx, rejected); err != nil {
		return false, err
	}
	return true, nil
}

func (a oauthAuth) secretValues() []string {
	if ts, ok := a.src.(*TokenSource); ok {
		return ts.secretValues()
	}
	return nil
}

func (oauthAuth) scheme() string { return "oauth" }
