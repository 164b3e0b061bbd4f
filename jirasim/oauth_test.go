package jirasim_test

import (
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

const allScopes = "read:jira-work write:jira-work read:jira-user manage:jira-webhook offline_access"

func refresh(t *testing.T, srv *jirasim.Server, rt string) resp {
	t.Helper()
	id, secret := srv.OAuthClient()
	return call(t, "POST", srv.URL+"/oauth/token", noAuth, map[string]string{"grant_type": "refresh_token", "client_id": id, "client_secret": secret, "refresh_token": rt})
}

func TestOAuthCodeFlowAndGateway(t *testing.T) {
	f := newCloud(t, jirasim.Options{})
	srv := f.srv
	tok := oauthLogin(t, srv, allScopes)
	if tok["token_type"] != "Bearer" || tok["expires_in"].(float64) != 3600 || tok["refresh_token"] == "" {
		t.Fatalf("token response %v", tok)
	}
	at := tok["access_token"].(string)

	// accessible-resources lists an unrelated site first; clients must match on url.
	srv.AddAccessibleResource(jirasim.AccessibleResource{ID: "other-cloud", Name: "other", URL: "https://other.atlassian.net"})
	r := call(t, "GET", srv.URL+"/oauth/token/accessible-resources", bearer(at), nil)
	wantStatus(t, r, 200)
	var sites []jirasim.AccessibleResource
	decodeInto(t, r, &sites)
	if len(sites) != 2 || sites[0].URL == srv.URL || sites[1].URL != srv.URL || sites[1].ID != srv.CloudID() {
		t.Fatalf("accessible resources %+v", sites)
	}

	// The token works on the gateway, not on the site path.
	wantStatus(t, call(t, "GET", srv.GatewayURL()+"/rest/api/3/myself", bearer(at), nil), 200)
	site := call(t, "GET", srv.URL+"/rest/api/3/myself", bearer(at), nil)
	wantStatus(t, site, 401)
	if string(site.body) != "Client must be authenticated to access this resource." {
		t.Fatalf("site 401 body %q", site.body)
	}
	wantStatus(t, call(t, "GET", srv.URL+"/ex/jira/not-this-cloud/rest/api/3/myself", bearer(at), nil), 404)
	// The API token is not accepted on the gateway.
	wantStatus(t, call(t, "GET", srv.GatewayURL()+"/rest/api/3/myself", f.a, nil), 401)

	recs := srv.Requests()
	var oauthOnSite int
	for _, rec := range recs {
		if rec.Auth == jirasim.AuthBearerOAuth && rec.Path == "/rest/api/3/myself" {
			oauthOnSite++
		}
	}
	if oauthOnSite != 1 {
		t.Fatalf("request log shows %d OAuth tokens sent to the site path, want 1", oauthOnSite)
	}
}

func TestOAuthAuthorizeErrors(t *testing.T) {
	srv := startSim(t, jirasim.Options{OAuthRedirectURIs: []string{"https://app.example.com/cb"}})
	id, secret := srv.OAuthClient()
	base := url.Values{"audience": {"api.atlassian.com"}, "client_id": {id}, "scope": {"read:jira-work"}, "redirect_uri": {"https://app.example.com/cb"}, "state": {"s"}, "response_type": {"code"}}
	with := func(k, v string) string {
		q := url.Values{}
		for kk, vv := range base {
			q[kk] = vv
		}
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		return srv.URL + "/authorize?" + q.Encode()
	}
	wantStatus(t, call(t, "GET", with("client_id", "nope"), noAuth, nil), 400)
	wantStatus(t, call(t, "GET", with("redirect_uri", ""), noAuth, nil), 400)
	wantStatus(t, call(t, "GET", with("redirect_uri", "https://evil.example.com/cb"), noAuth, nil), 400)
	r := call(t, "GET", with("response_type", "token"), noAuth, nil)
	wantStatus(t, r, 302)
	if loc, _ := url.Parse(r.header.Get("Location")); loc.Query().Get("error") != "unsupported_response_type" {
		t.Fatalf("location %s", loc)
	}

	srv.SetConsentDenied(true)
	r = call(t, "GET", with("state", "s2"), noAuth, nil)
	loc, _ := url.Parse(r.header.Get("Location"))
	if loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "s2" || loc.Query().Get("code") != "" {
		t.Fatalf("deny redirect %s", loc)
	}
	srv.SetConsentDenied(false)

	// Codes are single use and expire after 10 minutes.
	r = call(t, "GET", with("state", "s3"), noAuth, nil)
	loc, _ = url.Parse(r.header.Get("Location"))
	code := loc.Query().Get("code")
	exchange := func(code, secret string) resp {
		return call(t, "POST", srv.URL+"/oauth/token", noAuth, map[string]string{"grant_type": "authorization_code", "client_id": id, "client_secret": secret, "code": code, "redirect_uri": "https://app.example.com/cb"})
	}
	bad := exchange(code, "wrong-secret")
	wantStatus(t, bad, 401)
	if bad.json(t)["error"] != "access_denied" {
		t.Fatalf("wrong secret body %s", bad.body)
	}
	wantStatus(t, exchange(code, secret), 200)
	reused := exchange(code, secret)
	wantStatus(t, reused, 400)
	if m := reused.json(t); m["error"] != "invalid_request" || m["error_description"] != "authorization_code is invalid" {
		t.Fatalf("reused code body %s", reused.body)
	}
	r = call(t, "GET", with("state", "s4"), noAuth, nil)
	loc, _ = url.Parse(r.header.Get("Location"))
	srv.AdvanceClock(11 * time.Minute)
	wantStatus(t, exchange(loc.Query().Get("code"), secret), 400)

	// Form-encoded token requests are accepted too.
	r = call(t, "GET", with("state", "s5"), noAuth, nil)
	loc, _ = url.Parse(r.header.Get("Location"))
	form := url.Values{"grant_type": {"authorization_code"}, "client_id": {id}, "client_secret": {secret}, "code": {loc.Query().Get("code")}, "redirect_uri": {"https://app.example.com/cb"}}
	res, err := http.PostForm(srv.URL+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("form exchange status %d", res.StatusCode)
	}
}

func TestRefreshRotationAndLeeway(t *testing.T) {
	srv := startSim(t, jirasim.Options{})
	tok := oauthLogin(t, srv, allScopes)
	rt1 := tok["refresh_token"].(string)

	r := refresh(t, srv, rt1)
	wantStatus(t, r, 200)
	rt2 := r.json(t)["refresh_token"].(string)
	if rt2 == rt1 {
		t.Fatal("refresh token did not rotate")
	}
	// Reuse of the old token within the 10-minute leeway still yields a fresh pair.
	srv.AdvanceClock(5 * time.Minute)
	r = refresh(t, srv, rt1)
	wantStatus(t, r, 200)
	rt3 := r.json(t)["refresh_token"].(string)
	wantStatus(t, refresh(t, srv, rt3), 200)

	// Outside the leeway the whole family is revoked, including the newest token.
	srv.AdvanceClock(20 * time.Minute)
	dead := refresh(t, srv, rt1)
	wantStatus(t, dead, 403)
	if m := dead.json(t); m["error"] != "invalid_grant" || m["error_description"] != "Unknown or invalid refresh token." {
		t.Fatalf("dead refresh body %s", dead.body)
	}
	wantStatus(t, refresh(t, srv, rt3), 403)
	wantStatus(t, refresh(t, srv, "never-issued"), 403)
}

func TestConcurrentRefreshesAllSucceedWithinLeeway(t *testing.T) {
	srv := startSim(t, jirasim.Options{})
	tok := oauthLogin(t, srv, allScopes)
	rt := tok["refresh_token"].(string)
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := tryCall("POST", srv.URL+"/oauth/token", noAuth, map[string]string{"grant_type": "refresh_token", "client_id": "jirasim-client", "client_secret": "jirasim-secret", "refresh_token": rt})
			if err != nil {
				t.Error(err)
				return
			}
			statuses[i] = r.status
		}()
	}
	wg.Wait()
	for i, st := range statuses {
		if st != 200 {
			t.Fatalf("refresher %d got %d", i, st)
		}
	}
}

func TestRevokeAndExpireAccessTokens(t *testing.T) {
	srv := startSim(t, jirasim.Options{AccessTokenTTL: 30 * time.Minute})
	tok := oauthLogin(t, srv, allScopes)
	if tok["expires_in"].(float64) != 1800 {
		t.Fatalf("expires_in %v", tok["expires_in"])
	}
	at := tok["access_token"].(string)
	me := srv.GatewayURL() + "/rest/api/3/myself"
	wantStatus(t, call(t, "GET", me, bearer(at), nil), 200)
	srv.ExpireAccessTokens()
	wantStatus(t, call(t, "GET", me, bearer(at), nil), 401)
	r := refresh(t, srv, tok["refresh_token"].(string))
	wantStatus(t, r, 200)
	at2 := r.json(t)["access_token"].(string)
	wantStatus(t, call(t, "GET", me, bearer(at2), nil), 200)
	srv.AdvanceClock(31 * time.Minute)
	wantStatus(t, call(t, "GET", me, bearer(at2), nil), 401)

	if n := srv.RevokeOAuthGrants("admin@example.com"); n != 1 {
		t.Fatalf("revoked %d grants", n)
	}
	wantStatus(t, refresh(t, srv, r.json(t)["refresh_token"].(string)), 403)
}

func TestScopeChecks(t *testing.T) {
	f := newCloud(t, jirasim.Options{})
	tok := oauthLogin(t, f.srv, "read:jira-work offline_access")
	at := tok["access_token"].(string)
	create := call(t, "POST", f.srv.GatewayURL()+"/rest/api/3/issue", bearer(at), map[string]any{"fields": map[string]any{
		"project": map[string]string{"key": "SEC"}, "issuetype": map[string]string{"name": "Bug"}, "summary": "x"}})
	wantStatus(t, create, 401)
	if create.json(t)["message"] != "Unauthorized; scope does not match" {
		t.Fatalf("scope body %s", create.body)
	}
	wantStatus(t, call(t, "POST", f.srv.GatewayURL()+"/rest/api/3/webhook", bearer(at), map[string]any{"url": "https://x.example.com", "webhooks": []any{}}), 403)
	// No offline_access → no refresh token.
	if tok2 := oauthLogin(t, f.srv, "read:jira-work"); tok2["refresh_token"] != nil {
		t.Fatalf("refresh token without offline_access: %v", tok2)
	}
}
