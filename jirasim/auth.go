package jirasim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// authState holds every credential the site has issued. It has its own lock so that credential
// checks never wait for a long search holding the data lock.
type authState struct {
	mu        sync.Mutex
	apiTokens map[string]uint32 // API token -> user index (Cloud Basic email:token)
	pats      map[string]uint32 // PAT -> user index (DC Bearer)
	passwords map[string]string // DC user name -> password (DC Basic)

	codes   map[string]*authCode
	access  map[string]*accessToken
	refresh map[string]*refreshToken
	grants  []*grant

	consentDenied bool
	consentUser   string // email; admin when empty
	extraSites    []AccessibleResource
}

// grant is one consent: a token family. Revoking it kills every access and refresh token in it.
type grant struct {
	user     uint32
	clientID string
	scopes   []string
	revoked  bool
	created  time.Time
}

type authCode struct {
	grantUser   uint32
	clientID    string
	redirectURI string
	scopes      []string
	expires     time.Time
	used        bool
}

type accessToken struct {
	g       *grant
	expires time.Time
}

type refreshToken struct {
	g *grant
	// rotatedAt is when this token was superseded; zero while it is the family's current token.
	rotatedAt time.Time
}

func newAuthState() *authState {
	return &authState{
		apiTokens: map[string]uint32{},
		pats:      map[string]uint32{},
		passwords: map[string]string{},
		codes:     map[string]*authCode{},
		access:    map[string]*accessToken{},
		refresh:   map[string]*refreshToken{},
	}
}

func (g *grant) has(scope string) bool { return slices.Contains(g.scopes, scope) }

// principal is who a request authenticated as.
type principal struct {
	kind  AuthKind
	valid bool
	user  uint32
	g     *grant // OAuth only
	// expired distinguishes an expired/revoked OAuth token from an unknown one.
	expired bool
}

// ---- credential issuing (Go API) ----

// userForCredential finds or creates the user a credential is issued to.
func (s *Sim) userForCredential(who string) (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.st.findUser(who); ok {
		return i, nil
	}
	u := User{Name: who}
	if strings.Contains(who, "@") {
		u = User{Email: who}
	}
	return s.st.addUser(u)
}

// APIToken issues a Cloud API token for the user with this email (created if missing). Use it as
// Basic email:token on the site path.
func (s *Sim) APIToken(email string) string {
	u, err := s.userForCredential(email)
	if err != nil {
		panic(fmt.Sprintf("jirasim: APIToken(%q): %v", email, err))
	}
	tok := randomToken("ATATT3x")
	s.auth.mu.Lock()
	s.auth.apiTokens[tok] = u
	s.auth.mu.Unlock()
	return tok
}

// PAT issues a Data Center personal access token for the user with this name (created if
// missing). Use it as Authorization: Bearer <PAT>. A Cloud site recognises but rejects PATs.
func (s *Sim) PAT(userName string) string {
	u, err := s.userForCredential(userName)
	if err != nil {
		panic(fmt.Sprintf("jirasim: PAT(%q): %v", userName, err))
	}
	tok := randomToken("NjM")
	s.auth.mu.Lock()
	s.auth.pats[tok] = u
	s.auth.mu.Unlock()
	return tok
}

// SetPassword sets a Data Center user's password for Basic user:password (user created if missing).
func (s *Sim) SetPassword(userName, password string) {
	u, err := s.userForCredential(userName)
	if err != nil {
		panic(fmt.Sprintf("jirasim: SetPassword(%q): %v", userName, err))
	}
	s.mu.RLock()
	name := s.st.users[u].Name
	s.mu.RUnlock()
	s.auth.mu.Lock()
	s.auth.passwords[name] = password
	s.auth.mu.Unlock()
}

// OAuthClient returns the configured 3LO client id and secret.
func (s *Sim) OAuthClient() (clientID, clientSecret string) {
	return s.opts.OAuthClientID, s.opts.OAuthClientSecret
}

// GrantOAuth performs a consent without the browser round trip and returns the token pair, as
// if the user with this email had completed /authorize and the code exchange.
func (s *Sim) GrantOAuth(email string, scopes ...string) (OAuthTokens, error) {
	u, err := s.userForCredential(email)
	if err != nil {
		return OAuthTokens{}, fmt.Errorf("grant oauth: %w", err)
	}
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	g := &grant{user: u, clientID: s.opts.OAuthClientID, scopes: slices.Clone(scopes), created: s.Now()}
	s.auth.grants = append(s.auth.grants, g)
	return s.issueTokensLocked(g, true), nil
}

// SetConsentDenied makes /authorize redirect with error=access_denied, like a user clicking Cancel.
func (s *Sim) SetConsentDenied(deny bool) {
	s.auth.mu.Lock()
	s.auth.consentDenied = deny
	s.auth.mu.Unlock()
}

// SetConsentUser chooses the user (by email) who consents on /authorize.
func (s *Sim) SetConsentUser(email string) {
	s.auth.mu.Lock()
	s.auth.consentUser = email
	s.auth.mu.Unlock()
}

// AddAccessibleResource adds an unrelated site to accessible-resources answers.
func (s *Sim) AddAccessibleResource(r AccessibleResource) {
	s.auth.mu.Lock()
	s.auth.extraSites = append(s.auth.extraSites, r)
	s.auth.mu.Unlock()
}

// RevokeOAuthGrants revokes every grant of the user with this email (the effect of a password
// change or of removing the app): their access tokens answer 401 and refresh answers 403
// invalid_grant. It returns how many grants were revoked.
func (s *Sim) RevokeOAuthGrants(email string) int {
	s.mu.RLock()
	u, ok := s.st.findUser(email)
	s.mu.RUnlock()
	if !ok {
		return 0
	}
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	n := 0
	for _, g := range s.auth.grants {
		if g.user == u && !g.revoked {
			g.revoked = true
			n++
		}
	}
	return n
}

// ExpireAccessTokens makes every issued access token expired now (refresh tokens stay valid).
func (s *Sim) ExpireAccessTokens() {
	now := s.Now()
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	for _, a := range s.auth.access {
		if a.expires.After(now) {
			a.expires = now.Add(-time.Second)
		}
	}
}

// issueTokensLocked mints an access token (and a refresh token when offline_access was granted).
func (s *Sim) issueTokensLocked(g *grant, withRefresh bool) OAuthTokens {
	at := randomToken("sim-at-")
	s.auth.access[at] = &accessToken{g: g, expires: s.Now().Add(s.opts.AccessTokenTTL)}
	out := OAuthTokens{
		AccessToken: at,
		ExpiresIn:   int(s.opts.AccessTokenTTL / time.Second),
		Scope:       strings.Join(g.scopes, " "),
		TokenType:   "Bearer",
	}
	if withRefresh && g.has(ScopeOffline) {
		rt := randomToken("sim-rt-")
		s.auth.refresh[rt] = &refreshToken{g: g}
		out.RefreshToken = rt
	}
	return out
}

// ---- authentication of REST requests ----

// authenticate classifies and validates the request's credentials. It never logs them.
func (s *Sim) authenticate(r *http.Request) principal {
	h := r.Header.Get("Authorization")
	if h == "" {
		return principal{kind: AuthNone}
	}
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	switch strings.ToLower(scheme) {
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return principal{kind: AuthInvalid}
		}
		name, secret, ok := strings.Cut(string(raw), ":")
		if !ok {
			return principal{kind: AuthInvalid}
		}
		s.mu.RLock()
		u, found := s.st.findUser(name)
		var uname string
		if found {
			uname = s.st.users[u].Name
		}
		s.mu.RUnlock()
		if !found {
			return principal{kind: AuthInvalid}
		}
		s.auth.mu.Lock()
		defer s.auth.mu.Unlock()
		if s.flavor == Cloud {
			if tu, ok := s.auth.apiTokens[secret]; ok && tu == u {
				return principal{kind: AuthBasic, valid: true, user: u}
			}
			return principal{kind: AuthInvalid}
		}
		if pw, ok := s.auth.passwords[uname]; ok && pw == secret {
			return principal{kind: AuthBasic, valid: true, user: u}
		}
		return principal{kind: AuthInvalid}
	case "bearer":
		s.auth.mu.Lock()
		defer s.auth.mu.Unlock()
		if a, ok := s.auth.access[cred]; ok {
			p := principal{kind: AuthBearerOAuth, user: a.g.user, g: a.g}
			if a.g.revoked || !s.Now().Before(a.expires) {
				p.expired = true
				return p
			}
			p.valid = true
			return p
		}
		if u, ok := s.auth.pats[cred]; ok {
			return principal{kind: AuthBearerPAT, valid: s.flavor == DataCenter, user: u}
		}
		return principal{kind: AuthInvalid}
	}
	return principal{kind: AuthInvalid}
}

// ---- OAuth authorization server ----

// handleAuthorize imitates https://auth.atlassian.com/authorize: validation errors about the
// client or redirect URI are shown to the user (400), everything else is reported to the
// redirect URI as an OAuth error; consent is automatic unless SetConsentDenied(true).
func (s *Sim) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	clientID := q.Get("client_id")
	redirectURI := q.Get("redirect_uri")
	if clientID == "" || clientID != s.opts.OAuthClientID {
		http.Error(w, "Invalid client_id: the app does not exist or is not authorized to use 3LO.", http.StatusBadRequest)
		return
	}
	if redirectURI == "" {
		http.Error(w, "redirect_uri is required.", http.StatusBadRequest)
		return
	}
	ru, err := url.Parse(redirectURI)
	if err != nil || ru.Scheme == "" || ru.Host == "" {
		http.Error(w, "redirect_uri is not a valid absolute URL.", http.StatusBadRequest)
		return
	}
	if len(s.opts.OAuthRedirectURIs) > 0 && !slices.Contains(s.opts.OAuthRedirectURIs, redirectURI) {
		http.Error(w, "redirect_uri does not match the callback URL configured for the app.", http.StatusBadRequest)
		return
	}
	state := q.Get("state")
	fail := func(code, desc string) {
		v := ru.Query()
		v.Set("error", code)
		v.Set("error_description", desc)
		if state != "" {
			v.Set("state", state)
		}
		ru.RawQuery = v.Encode()
		http.Redirect(w, r, ru.String(), http.StatusFound)
	}
	if aud := q.Get("audience"); aud != "" && aud != "api.atlassian.com" {
		fail("invalid_request", "audience must be api.atlassian.com")
		return
	}
	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "response_type must be code")
		return
	}
	scopes := strings.Fields(q.Get("scope"))
	if len(scopes) == 0 {
		fail("invalid_scope", "scope is required")
		return
	}
	s.auth.mu.Lock()
	denied := s.auth.consentDenied
	who := s.auth.consentUser
	s.auth.mu.Unlock()
	if denied {
		fail("access_denied", "User did not authorize the request")
		return
	}
	u := s.admin
	if who != "" {
		s.mu.RLock()
		found, ok := s.st.findUser(who)
		s.mu.RUnlock()
		if !ok {
			fail("access_denied", "consenting user does not exist")
			return
		}
		u = found
	}
	code := randomToken("sim-code-")
	s.auth.mu.Lock()
	s.auth.codes[code] = &authCode{grantUser: u, clientID: clientID, redirectURI: redirectURI, scopes: scopes, expires: s.Now().Add(s.opts.AuthCodeTTL)}
	s.auth.mu.Unlock()
	v := ru.Query()
	v.Set("code", code)
	if state != "" {
		v.Set("state", state)
	}
	ru.RawQuery = v.Encode()
	http.Redirect(w, r, ru.String(), http.StatusFound)
}

type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Code         string `json:"code"`
	RedirectURI  string `json:"redirect_uri"`
	RefreshToken string `json:"refresh_token"`
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// handleToken imitates POST https://auth.atlassian.com/oauth/token (JSON body; form accepted).
func (s *Sim) handleToken(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "could not read the request body")
		return
	}
	if mt == "application/x-www-form-urlencoded" {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
			return
		}
		req = tokenRequest{GrantType: v.Get("grant_type"), ClientID: v.Get("client_id"), ClientSecret: v.Get("client_secret"),
			Code: v.Get("code"), RedirectURI: v.Get("redirect_uri"), RefreshToken: v.Get("refresh_token")}
	} else if err := json.Unmarshal(body, &req); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "malformed JSON body")
		return
	}
	if req.ClientID != s.opts.OAuthClientID || req.ClientSecret != s.opts.OAuthClientSecret {
		// jira.js notes that a wrong secret yields access_denied (JIRA-NOTES.md §1.4).
		writeOAuthError(w, http.StatusUnauthorized, "access_denied", "Unauthorized")
		return
	}
	now := s.Now()
	switch req.GrantType {
	case "authorization_code":
		s.auth.mu.Lock()
		c, ok := s.auth.codes[req.Code]
		if !ok || c.used || !now.Before(c.expires) || c.clientID != req.ClientID {
			s.auth.mu.Unlock()
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "authorization_code is invalid")
			return
		}
		if req.RedirectURI != c.redirectURI {
			s.auth.mu.Unlock()
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "redirect_uri is invalid")
			return
		}
		c.used = true
		g := &grant{user: c.grantUser, clientID: c.clientID, scopes: c.scopes, created: now}
		s.auth.grants = append(s.auth.grants, g)
		out := s.issueTokensLocked(g, true)
		s.auth.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	case "refresh_token":
		s.auth.mu.Lock()
		out, ok := s.rotateLocked(req.RefreshToken, req.ClientID, now)
		s.auth.mu.Unlock()
		if !ok {
			writeOAuthError(w, http.StatusForbidden, "invalid_grant", "Unknown or invalid refresh token.")
			return
		}
		writeJSON(w, http.StatusOK, out)
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
	}
}

// rotateLocked implements Atlassian's rotating refresh tokens (JIRA-NOTES.md §1.4): the
// presented token is disabled and a new one issued; a disabled token presented again within the
// leeway still yields a fresh pair (so concurrent refreshers both succeed), and outside the
// leeway it revokes the whole family.
func (s *Sim) rotateLocked(token, clientID string, now time.Time) (OAuthTokens, bool) {
	rt, ok := s.auth.refresh[token]
	if !ok || rt.g.revoked || rt.g.clientID != clientID {
		return OAuthTokens{}, false
	}
	if !rt.rotatedAt.IsZero() && now.Sub(rt.rotatedAt) > s.opts.RefreshLeeway {
		rt.g.revoked = true
		s.log.Info("refresh token reused outside the leeway; token family revoked")
		return OAuthTokens{}, false
	}
	// Supersede every current token of the family: only the newly issued one is current.
	for _, other := range s.auth.refresh {
		if other.g == rt.g && other.rotatedAt.IsZero() {
			other.rotatedAt = now
		}
	}
	return s.issueTokensLocked(rt.g, true), true
}

// handleAccessibleResources imitates GET https://api.atlassian.com/oauth/token/accessible-resources.
func (s *Sim) handleAccessibleResources(w http.ResponseWriter, r *http.Request, p principal) {
	if p.kind != AuthBearerOAuth || !p.valid {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"code": 401, "message": "Unauthorized"})
		return
	}
	var jiraScopes []string
	for _, sc := range p.g.scopes {
		if sc != ScopeOffline {
			jiraScopes = append(jiraScopes, sc)
		}
	}
	out := []AccessibleResource{}
	s.auth.mu.Lock()
	extra := slices.Clone(s.auth.extraSites)
	s.auth.mu.Unlock()
	extra = append(extra, s.opts.ExtraSites...)
	// Unrelated sites first, so a client that takes element 0 fails visibly.
	out = append(out, extra...)
	out = append(out, AccessibleResource{
		ID: s.cloudID, Name: s.opts.SiteName, URL: s.BaseURL(), Scopes: jiraScopes,
		AvatarURL: s.BaseURL() + "/avatars/site.png",
	})
	writeJSON(w, http.StatusOK, out)
}
