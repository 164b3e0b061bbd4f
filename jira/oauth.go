package jira

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Atlassian's OAuth 2.0 (3LO) hosts.
const (
	DefaultAuthBaseURL = "https://auth.atlassian.com"
	DefaultAPIBaseURL  = "https://api.atlassian.com"
	// oauthAudience is required by Atlassian's authorize endpoint for Jira APIs.
	oauthAudience = "api.atlassian.com"
)

// Classic OAuth scopes used by the connector.
const (
	ScopeReadJiraWork      = "read:jira-work"
	ScopeReadJiraUser      = "read:jira-user"
	ScopeWriteJiraWork     = "write:jira-work"
	ScopeManageJiraWebhook = "manage:jira-webhook"
	ScopeOfflineAccess     = "offline_access"
)

// Features are the optional capabilities of a connection that widen its OAuth scopes.
type Features struct {
	FindingSync     bool // create and transition issues
	DynamicWebhooks bool // register webhooks through the REST API
}

// Scopes returns the minimal classic scopes for f: evidence collection needs only read access and
// a refresh token; write and webhook scopes are requested only when the feature is on, so that a
// tenant's consent screen asks for no more than the connection uses.
func Scopes(f Features) []string {
	s := []string{ScopeReadJiraWork, ScopeReadJiraUser, ScopeOfflineAccess}
	if f.FindingSync {
		s = append(s, ScopeWriteJiraWork)
	}
	if f.DynamicWebhooks {
		s = append(s, ScopeManageJiraWebhook)
	}
	return s
}

// OAuthApp is an Atlassian OAuth 2.0 (3LO) app registration. It performs the token-endpoint and
// accessible-resources calls; Jira calls themselves go through a Client with OAuth(TokenSource).
type OAuthApp struct {
	ClientID     string
	ClientSecret Secret
	RedirectURL  string
	// AuthBaseURL hosts /authorize and /oauth/token (default https://auth.atlassian.com).
	AuthBaseURL string
	// APIBaseURL hosts /oauth/token/accessible-resources and the /ex/jira gateway
	// (default https://api.atlassian.com).
	APIBaseURL string
	// HTTPClient defaults to a client that does not follow redirects (and reaches any address);
	// the services pass the egress policy's client (egress.Policy.HTTPClient).
	HTTPClient *http.Client
	// MaxResponseBytes bounds token and resource responses (default 1 MiB).
	MaxResponseBytes int64
	// Stats counts token-endpoint and accessible-resources calls ("oauth.*").
	Stats  *CallStats
	Logger *slog.Logger
	// Now is the clock for token expiry; tests set it. Defaults to time.Now.
	Now func() time.Time
}

func (a *OAuthApp) authBase() string {
	if a.AuthBaseURL == "" {
		return DefaultAuthBaseURL
	}
	return strings.TrimRight(a.AuthBaseURL, "/")
}

func (a *OAuthApp) apiBase() string {
	if a.APIBaseURL == "" {
		return DefaultAPIBaseURL
	}
	return strings.TrimRight(a.APIBaseURL, "/")
}

func (a *OAuthApp) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *OAuthApp) httpClient() *http.Client {
	if a.HTTPClient != nil {
		return a.HTTPClient
	}
	return &http.Client{
		Timeout:       DefaultRequestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (a *OAuthApp) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// AuthorizeURL returns the consent URL to send the user to. state must be an unguessable,
// single-use value bound to the user's session; scopes usually come from Scopes.
func (a *OAuthApp) AuthorizeURL(state string, scopes []string) (string, error) {
	if a.ClientID == "" || a.RedirectURL == "" {
		return "", configError("oauth.authorize_url", "client id and redirect URL are required")
	}
	if state == "" {
		return "", configError("oauth.authorize_url", "state is required")
	}
	if len(scopes) == 0 {
		return "", configError("oauth.authorize_url", "at least one scope is required")
	}
	cfg := oauth2.Config{
		ClientID:    a.ClientID,
		RedirectURL: a.RedirectURL,
		Scopes:      scopes,
		Endpoint:    oauth2.Endpoint{AuthURL: a.authBase() + "/authorize"},
	}
	// AuthCodeURL adds response_type=code, client_id, redirect_uri, scope and state.
	return cfg.AuthCodeURL(state,
		oauth2.SetAuthURLParam("audience", oauthAudience),
		oauth2.SetAuthURLParam("prompt", "consent"),
	), nil
}

// Tokens is an OAuth token set. Access and Refresh are Secrets: a Tokens value can be logged or
// printed without leaking them, and code that persists them must Reveal and seal them explicitly.
type Tokens struct {
	Access  Secret
	Refresh Secret
	// Expiry is when Access stops working; zero when the server did not say.
	Expiry time.Time
	// Issued is when Access was received; with Expiry it gives the token's lifetime, which bounds
	// how early it may be refreshed. Zero when unknown (tokens stored before it was recorded).
	Issued time.Time
	Scopes []string
}

// oauth2Token converts to the x/oauth2 representation.
func (t Tokens) oauth2Token() *oauth2.Token {
	return &oauth2.Token{
		AccessToken:  t.Access.Reveal(),
		RefreshToken: t.Refresh.Reveal(),
		TokenType:    "Bearer",
		Expiry:       t.Expiry,
	}
}

// Exchange trades an authorization code for tokens.
func (a *OAuthApp) Exchange(ctx context.Context, code string) (Tokens, error) {
	if code == "" {
		return Tokens{}, configError("oauth.exchange", "authorization code is empty")
	}
	return a.token(ctx, "oauth.exchange", map[string]string{
		"grant_type":    "authorization_code",
		"client_id":     a.ClientID,
		"client_secret": a.ClientSecret.Reveal(),
		"code":          code,
		"redirect_uri":  a.RedirectURL,
	}, Secret{}, code)
}

// Refresh trades a refresh token for a new token pair. Atlassian rotates refresh tokens: the one
// passed in is disabled once this succeeds, so callers must persist the result before using it.
// TokenSource does that; call Refresh directly only when you handle persistence yourself.
func (a *OAuthApp) Refresh(ctx context.Context, refresh Secret) (Tokens, error) {
	if refresh.IsZero() {
		return Tokens{}, &Error{Kind: KindReauthRequired, Op: "oauth.refresh", Detail: "no refresh token (offline_access was not granted)"}
	}
	return a.token(ctx, "oauth.refresh", map[string]string{
		"grant_type":    "refresh_token",
		"client_id":     a.ClientID,
		"client_secret": a.ClientSecret.Reveal(),
		"refresh_token": refresh.Reveal(),
	}, refresh, "")
}

// token posts to the token endpoint. Atlassian documents a JSON body for both grants, so the
// request is built here rather than with oauth2.Config.Exchange, which sends a form.
func (a *OAuthApp) token(ctx context.Context, op string, params map[string]string, refresh Secret, code string) (Tokens, error) {
	if a.ClientID == "" || a.ClientSecret.IsZero() {
		return Tokens{}, configError(op, "client id and client secret are required")
	}
	body, err := json.Marshal(params)
	if err != nil {
		return Tokens{}, configError(op, "encode token request")
	}
	scrub := []string{a.ClientSecret.Reveal(), refresh.Reveal(), code}
	res, err := a.send(ctx, op, http.MethodPost, a.authBase()+"/oauth/token", "/oauth/token", body, Secret{}, scrub)
	if err != nil {
		return Tokens{}, err
	}
	if res.status != http.StatusOK {
		return Tokens{}, tokenError(op, res, scrub)
	}
	var w struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    *int64 `json:"expires_in"`
		Scope        string `json:"scope"`
		TokenType    string `json:"token_type"`
	}
	if err := json.Unmarshal(res.body, &w); err != nil {
		return Tokens{}, &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodPost, Path: "/oauth/token", Status: res.status, Detail: "decode token response", Err: jsonErrorWithoutValues(err)}
	}
	if w.AccessToken == "" {
		return Tokens{}, &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodPost, Path: "/oauth/token", Status: res.status, Detail: "token response has no access_token"}
	}
	if w.TokenType != "" && !strings.EqualFold(w.TokenType, "bearer") {
		return Tokens{}, &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodPost, Path: "/oauth/token", Status: res.status, Detail: "unexpected token_type " + sanitizeText(w.TokenType, 20)}
	}
	t := Tokens{Access: NewSecret(w.AccessToken), Refresh: NewSecret(w.RefreshToken), Scopes: strings.Fields(w.Scope), Issued: a.now()}
	if w.RefreshToken == "" {
		// RFC 6749 §6 lets a server keep the old refresh token; Atlassian always rotates.
		t.Refresh = refresh
	}
	if w.ExpiresIn != nil && *w.ExpiresIn > 0 {
		t.Expiry = a.now().Add(time.Duration(*w.ExpiresIn) * time.Second)
	}
	return t, nil
}

// jsonErrorWithoutValues keeps a JSON decode error's position/type information but never the
// offending bytes: a token response that fails to decode still holds live tokens.
func jsonErrorWithoutValues(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at offset %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q has JSON type %s", te.Field, te.Value)
	}
	return errors.New("invalid JSON")
}

// tokenError maps the token endpoint's error codes. Atlassian answers a dead refresh token with
// 403 invalid_grant; we branch on the code, not the status. unauthorized_client also means the
// grant is gone. access_denied on a refresh (and invalid_client) means our client credentials are
// wrong: a configuration error, not something the user can fix by consenting again.
func tokenError(op string, res *oauthResponse, scrub []string) *Error {
	e := &Error{Op: op, Method: http.MethodPost, Path: "/oauth/token", Status: res.status}
	var w struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(res.body, &w)
	code := sanitizeText(w.Error, 64)
	if code != "" {
		m := code
		if d := sanitizeText(redactValues(w.Description, scrub), 300); d != "" {
			m += ": " + d
		}
		e.Messages = []string{m}
	} else {
		// The token endpoint is the operator's (JIRA_AUTH_URL); a body that is not its error
		// JSON is still only described, like any other.
		parseErrorBody(e, res.header, res.body)
		for i := range e.Messages {
			e.Messages[i] = redactValues(e.Messages[i], scrub)
		}
	}
	e.RetryAfter = retryAfter(res.header, time.Now())
	switch code {
	case "invalid_grant", "unauthorized_client":
		e.Kind = KindReauthRequired
	case "access_denied", "invalid_client":
		e.Kind = KindConfig
		e.Detail = "the OAuth client credentials were refused; check the client id and secret"
	default:
		switch {
		case res.status == http.StatusTooManyRequests || (res.status == http.StatusServiceUnavailable && e.RetryAfter > 0):
			e.Kind = KindRateLimited
		case res.status >= 500:
			e.Kind = KindServer
		default:
			e.Kind = KindBadRequest
		}
	}
	return e
}

type oauthResponse struct {
	status int
	header http.Header
	body   []byte
}

func (a *OAuthApp) send(ctx context.Context, op, method, target, logPath string, body []byte, bearer Secret, scrub []string) (*oauthResponse, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	var rdr io.Reader
	if body != nil {
		rdr = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rdr)
	if err != nil {
		return nil, &Error{Kind: KindConfig, Op: op, Method: method, Path: logPath, Detail: "build request (check AuthBaseURL/APIBaseURL)"}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", defaultUserAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if !bearer.IsZero() {
		req.Header.Set("Authorization", "Bearer "+bearer.Reveal())
		scrub = append(scrub, bearer.Reveal())
	}
	a.Stats.Record(op)
	start := time.Now()
	resp, err := a.httpClient().Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, &Error{Kind: KindTransport, Op: op, Method: method, Path: logPath, Err: ctxErr}
		}
		// As for Jira calls: the category in the error, the raw cause in the log.
		kind, msg := transportFailure(err)
		level := slog.LevelInfo
		if kind == KindEgressDenied {
			level = slog.LevelWarn
		}
		a.logger().LogAttrs(ctx, level, "oauth call failed", slog.String("op", op), slog.String("path", logPath),
			slog.String("kind", string(kind)), slog.String("cause", redactValues(err.Error(), scrub)), slog.Duration("elapsed", time.Since(start)))
		return nil, &Error{Kind: kind, Op: op, Method: method, Path: logPath, Err: redactedError{msg: msg, cause: err}}
	}
	defer func() { _ = resp.Body.Close() }()
	limit := a.MaxResponseBytes
	if limit <= 0 {
		limit = 1 << 20
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	a.logger().LogAttrs(ctx, slog.LevelDebug, "oauth call", slog.String("op", op), slog.String("path", logPath),
		slog.Int("status", resp.StatusCode), slog.Duration("elapsed", time.Since(start)))
	if err != nil {
		kind, msg := transportFailure(err)
		a.logger().LogAttrs(ctx, slog.LevelInfo, "oauth call failed", slog.String("op", op), slog.String("path", logPath),
			slog.Int("status", resp.StatusCode), slog.String("kind", string(kind)), slog.String("cause", redactValues(err.Error(), scrub)))
		return nil, &Error{Kind: kind, Op: op, Method: method, Path: logPath, Status: resp.StatusCode, Detail: "read response body",
			Err: redactedError{msg: msg, cause: err}}
	}
	if int64(len(data)) > limit {
		return nil, &Error{Kind: KindResponseTooLarge, Op: op, Method: method, Path: logPath, Status: resp.StatusCode, Detail: fmt.Sprintf("response body exceeds %d bytes", limit)}
	}
	return &oauthResponse{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// Resource is one site an OAuth grant covers, from accessible-resources. ID is the cloudid.
type Resource struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	URL       string   `json:"url"`
	Scopes    []string `json:"scopes"`
	AvatarURL string   `json:"avatarUrl"`
}

// AccessibleResources lists the sites the access token's grant covers.
func (a *OAuthApp) AccessibleResources(ctx context.Context, access Secret) ([]Resource, error) {
	const op, path = "oauth.accessible_resources", "/oauth/token/accessible-resources"
	if access.IsZero() {
		return nil, configError(op, "access token is empty")
	}
	res, err := a.send(ctx, op, http.MethodGet, a.apiBase()+path, path, nil, access, nil)
	if err != nil {
		return nil, err
	}
	if res.status != http.StatusOK {
		e := &Error{Op: op, Method: http.MethodGet, Path: path, Status: res.status}
		parseErrorBody(e, res.header, res.body)
		for i := range e.Messages {
			e.Messages[i] = redactValues(e.Messages[i], []string{access.Reveal()})
		}
		e.RetryAfter = retryAfter(res.header, time.Now())
		e.Kind = classifyStatus(e, res.header)
		if e.Kind == KindUnauthorized {
			e.Kind = KindReauthRequired
		}
		return nil, e
	}
	var out []Resource
	if err := json.Unmarshal(res.body, &out); err != nil {
		return nil, &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodGet, Path: path, Status: res.status, Detail: "decode accessible resources", Err: jsonErrorWithoutValues(err)}
	}
	for i, r := range out {
		if r.ID == "" || r.URL == "" {
			return nil, &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodGet, Path: path, Status: res.status, Detail: fmt.Sprintf("resource %d has no id or url", i)}
		}
	}
	return out, nil
}

// CloudIDForSite finds the cloudid of siteURL among the grant's accessible resources, comparing
// normalized URLs (scheme and host case-insensitive, default port and trailing slash ignored).
// A site the grant does not cover is KindReauthRequired: the user has to consent again and pick
// that site.
func (a *OAuthApp) CloudIDForSite(ctx context.Context, access Secret, siteURL string) (string, error) {
	const op = "oauth.cloud_id"
	want, err := NormalizeSiteURL(siteURL)
	if err != nil {
		return "", configError(op, "site URL: "+err.Error())
	}
	resources, err := a.AccessibleResources(ctx, access)
	if err != nil {
		return "", err
	}
	var granted []string
	for _, r := range resources {
		got, err := NormalizeSiteURL(r.URL)
		if err != nil {
			continue
		}
		if got == want {
			if !validCloudID(r.ID) {
				return "", &Error{Kind: KindMalformedResponse, Op: op, Detail: "accessible resource has an invalid id"}
			}
			return r.ID, nil
		}
		granted = append(granted, got)
	}
	slices.Sort(granted)
	granted = slices.Compact(granted)
	detail := "the authorization does not cover site " + want
	if len(granted) > 0 {
		detail += " (it covers " + strings.Join(granted, ", ") + ")"
	}
	return "", &Error{Kind: KindReauthRequired, Op: op, Detail: detail}
}

// GatewayURL returns the Config.BaseURL for OAuth calls to the site with this cloudid.
func (a *OAuthApp) GatewayURL(cloudID string) (string, error) {
	if !validCloudID(cloudID) {
		return "", configError("oauth.gateway_url", "invalid cloud id")
	}
	return a.apiBase() + "/ex/jira/" + cloudID, nil
}

// validCloudID accepts the UUID-like ids Atlassian issues. The id becomes a URL path segment, so
// anything else (slashes, dots, percent signs) is refused rather than escaped.
func validCloudID(id string) bool {
	if id == "" || len(id) > 64 || id[0] == '-' {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// NormalizeSiteURL canonicalises a Jira site URL for comparison: https assumed when no scheme,
// lower-case scheme and host, no default port, no trailing slash, no query or fragment.
func NormalizeSiteURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("empty")
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", errors.New("not a URL")
	}
	if u.User != nil {
		return "", errors.New("must not contain user info")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", errors.New("scheme must be http or https")
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host + strings.TrimRight(u.EscapedPath(), "/"), nil
}
