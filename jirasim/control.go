package jirasim

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// The control API lets other processes drive a standalone simulator: everything a Go test can do
// through methods is reachable as JSON under /_sim/. It is never subject to faults. When
// Options.ControlToken is set, requests must carry it in X-Sim-Control-Token.

type controlRoute struct {
	method, path string // path may end in "/*" to capture one trailing segment ("{key}")
	h            func(w http.ResponseWriter, r *http.Request, arg string)
}

func (s *Sim) controlRoutes() []controlRoute {
	return []controlRoute{
		{"GET", "/_sim/info", s.ctlInfo},
		{"POST", "/_sim/seed", s.ctlSeed},
		{"POST", "/_sim/projects", s.ctlAddProject},
		{"POST", "/_sim/users", s.ctlAddUser},
		{"GET", "/_sim/fields", func(w http.ResponseWriter, _ *http.Request, _ string) { writeJSON(w, 200, s.CustomFields()) }},
		{"POST", "/_sim/fields", s.ctlAddField},
		{"POST", "/_sim/fields/required", s.ctlFieldRequired},
		{"POST", "/_sim/issues", s.ctlAddIssue},
		{"GET", "/_sim/issues/*", s.ctlGetIssue},
		{"POST", "/_sim/issues/*/transition", s.ctlTransition},
		{"POST", "/_sim/issues/*/edit", s.ctlEdit},
		{"GET", "/_sim/faults", func(w http.ResponseWriter, _ *http.Request, _ string) { writeJSON(w, 200, s.Faults()) }},
		{"PUT", "/_sim/faults", s.ctlSetFault},
		{"DELETE", "/_sim/faults", s.ctlClearFaults},
		{"PUT", "/_sim/search-lag", s.ctlSearchLag},
		{"PUT", "/_sim/search-page-budget", s.ctlSearchPageBudget},
		{"GET", "/_sim/requests", s.ctlRequests},
		{"DELETE", "/_sim/requests", func(w http.ResponseWriter, _ *http.Request, _ string) { s.ResetRequests(); w.WriteHeader(204) }},
		{"GET", "/_sim/counters", func(w http.ResponseWriter, _ *http.Request, _ string) { writeJSON(w, 200, s.OperationCounts()) }},
		{"GET", "/_sim/scan-stats", func(w http.ResponseWriter, _ *http.Request, _ string) { writeJSON(w, 200, s.ScanStats()) }},
		{"DELETE", "/_sim/scan-stats", func(w http.ResponseWriter, _ *http.Request, _ string) { s.ResetScanStats(); w.WriteHeader(204) }},
		{"GET", "/_sim/webhooks", func(w http.ResponseWriter, _ *http.Request, _ string) { writeJSON(w, 200, s.Webhooks()) }},
		{"POST", "/_sim/webhooks/admin", s.ctlAddAdminWebhook},
		{"POST", "/_sim/webhooks/flush", s.ctlFlush},
		{"PUT", "/_sim/webhook-faults", s.ctlWebhookFaults},
		{"GET", "/_sim/deliveries", func(w http.ResponseWriter, _ *http.Request, _ string) { writeJSON(w, 200, s.Deliveries()) }},
		{"DELETE", "/_sim/deliveries", func(w http.ResponseWriter, _ *http.Request, _ string) { s.ResetDeliveries(); w.WriteHeader(204) }},
		{"POST", "/_sim/credentials/api-token", s.ctlAPIToken},
		{"POST", "/_sim/credentials/pat", s.ctlPAT},
		{"POST", "/_sim/credentials/password", s.ctlPassword},
		{"POST", "/_sim/oauth/grant", s.ctlGrant},
		{"POST", "/_sim/oauth/revoke", s.ctlRevoke},
		{"POST", "/_sim/oauth/expire-access-tokens", func(w http.ResponseWriter, _ *http.Request, _ string) { s.ExpireAccessTokens(); w.WriteHeader(204) }},
		{"PUT", "/_sim/oauth/consent", s.ctlConsent},
		{"POST", "/_sim/clock/advance", s.ctlAdvance},
	}
}

func matchControl(pattern, path string) (string, bool) {
	pp := strings.Split(strings.Trim(pattern, "/"), "/")
	ps := strings.Split(strings.Trim(path, "/"), "/")
	if len(pp) != len(ps) {
		return "", false
	}
	arg := ""
	for i := range pp {
		if pp[i] == "*" {
			arg = ps[i]
			continue
		}
		if pp[i] != ps[i] {
			return "", false
		}
	}
	return arg, true
}

func (s *Sim) handleControl(w http.ResponseWriter, r *http.Request, _ *call) {
	if tok := s.opts.ControlToken; tok != "" {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Sim-Control-Token")), []byte(tok)) != 1 {
			writeErrors(w, http.StatusUnauthorized, []string{"missing or wrong X-Sim-Control-Token"}, nil)
			return
		}
	}
	pathMatched := false
	for _, rt := range s.controlRoutes() {
		arg, ok := matchControl(rt.path, r.URL.Path)
		if !ok {
			continue
		}
		pathMatched = true
		if rt.method == r.Method {
			rt.h(w, r, arg)
			return
		}
	}
	if pathMatched {
		writeErrors(w, http.StatusMethodNotAllowed, []string{"method not allowed"}, nil)
		return
	}
	writeErrors(w, http.StatusNotFound, []string{"unknown control endpoint " + r.URL.Path}, nil)
}

func ctlFail(w http.ResponseWriter, err error) {
	status := http.StatusBadRequest
	if errors.Is(err, ErrNotFound) {
		status = http.StatusNotFound
	}
	writeErrors(w, status, []string{err.Error()}, nil)
}

// duration accepts "1h30m" strings or integer nanoseconds in JSON.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	str := strings.Trim(string(b), `"`)
	if v, err := time.ParseDuration(str); err == nil {
		*d = duration(v)
		return nil
	}
	var n int64
	if _, err := fmt.Sscan(str, &n); err != nil {
		return fmt.Errorf("duration %s: want a Go duration string like \"250ms\"", b)
	}
	*d = duration(n)
	return nil
}

func (s *Sim) ctlInfo(w http.ResponseWriter, _ *http.Request, _ string) {
	admin := s.AdminUser()
	writeJSON(w, http.StatusOK, map[string]any{
		"flavor": s.flavor, "baseUrl": s.BaseURL(), "cloudId": s.cloudID, "gatewayUrl": s.GatewayURL(),
		"oauthClientId": s.opts.OAuthClientID, "projects": s.ProjectCount(), "issues": s.IssueCount(), "admin": admin,
		"now": s.Now().Format(jiraTimeLayout),
	})
}

func (s *Sim) ctlSeed(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		Seed int64 `json:"seed"`
		SeedSpec
	}
	if !decodeBody(w, r, &body) {
		return
	}
	stats, err := s.Seed(body.Seed, body.SeedSpec)
	if err != nil {
		ctlFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, stats)
}

func (s *Sim) ctlAddProject(w http.ResponseWriter, r *http.Request, _ string) {
	var spec ProjectSpec
	if !decodeBody(w, r, &spec) {
		return
	}
	p, err := s.AddProject(spec)
	if err != nil {
		ctlFail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, p)
}

func (s *Sim) ctlAddUser(w http.ResponseWriter, r *http.Request, _ string) {
	var u User
	if !decodeBody(w, r, &u) {
		return
	}
	out, err := s.AddUser(u)
	if err != nil {
		ctlFail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (s *Sim) ctlAddField(w http.ResponseWriter, r *http.Request, _ string) {
	var spec CustomFieldSpec
	if !decodeBody(w, r, &spec) {
		return
	}
	f, err := s.AddCustomField(spec)
	if err != nil {
		ctlFail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, f)
}

func (s *Sim) ctlFieldRequired(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		Project   string `json:"project"`
		IssueType string `json:"issueType"`
		FieldID   string `json:"fieldId"`
		Required  bool   `json:"required"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if err := s.SetFieldRequired(body.Project, body.IssueType, body.FieldID, body.Required); err != nil {
		ctlFail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) ctlAddIssue(w http.ResponseWriter, r *http.Request, _ string) {
	var spec IssueSpec
	if !decodeBody(w, r, &spec) {
		return
	}
	is, err := s.AddIssue(spec)
	if err != nil {
		ctlFail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, is)
}

func (s *Sim) ctlGetIssue(w http.ResponseWriter, _ *http.Request, key string) {
	is, ok := s.Issue(key)
	if !ok {
		ctlFail(w, fmt.Errorf("issue %s: %w", key, ErrNotFound))
		return
	}
	writeJSON(w, http.StatusOK, is)
}

func (s *Sim) ctlTransition(w http.ResponseWriter, r *http.Request, key string) {
	var body struct {
		Status     string `json:"status"`
		Resolution string `json:"resolution"`
		Actor      string `json:"actor"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if err := s.TransitionAs(body.Actor, key, body.Status, body.Resolution); err != nil {
		ctlFail(w, err)
		return
	}
	is, _ := s.Issue(key)
	writeJSON(w, http.StatusOK, is)
}

func (s *Sim) ctlEdit(w http.ResponseWriter, r *http.Request, key string) {
	var e IssueEdit
	if !decodeBody(w, r, &e) {
		return
	}
	if err := s.EditAsHuman(key, e); err != nil {
		ctlFail(w, err)
		return
	}
	is, _ := s.Issue(key)
	writeJSON(w, http.StatusOK, is)
}

func (s *Sim) ctlSetFault(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		Route   string    `json:"route"`
		Fault   Fault     `json:"fault"`
		Latency *duration `json:"latency"`
		Jitter  *duration `json:"jitter"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Latency != nil {
		body.Fault.Latency = time.Duration(*body.Latency)
	}
	if body.Jitter != nil {
		body.Fault.Jitter = time.Duration(*body.Jitter)
	}
	if err := s.SetFault(body.Route, body.Fault); err != nil {
		ctlFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Sim) ctlClearFaults(w http.ResponseWriter, r *http.Request, _ string) {
	if route := r.URL.Query().Get("route"); route != "" {
		s.ClearFault(route)
	} else {
		s.ClearFaults()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) ctlSearchLag(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		Lag duration `json:"lag"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	s.SetSearchLag(time.Duration(body.Lag))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) ctlSearchPageBudget(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		Bytes int `json:"bytes"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Bytes < 0 {
		writeErrors(w, http.StatusBadRequest, []string{"bytes must not be negative"}, nil)
		return
	}
	s.SetSearchPageBudget(body.Bytes)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) ctlRequests(w http.ResponseWriter, r *http.Request, _ string) {
	op := r.URL.Query().Get("operation")
	out := []RequestRecord{}
	for _, rec := range s.Requests() {
		if rec.Operation == OpControl {
			continue
		}
		if op == "" || rec.Operation == op {
			out = append(out, rec)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Sim) ctlAddAdminWebhook(w http.ResponseWriter, r *http.Request, _ string) {
	var spec AdminWebhookSpec
	if !decodeBody(w, r, &spec) {
		return
	}
	reg, err := s.AddAdminWebhook(spec)
	if err != nil {
		ctlFail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, reg)
}

func (s *Sim) ctlFlush(w http.ResponseWriter, r *http.Request, _ string) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.FlushWebhooks(ctx); err != nil {
		writeErrors(w, http.StatusGatewayTimeout, []string{err.Error()}, nil)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) ctlWebhookFaults(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		WebhookFaults
		DelayStr *duration `json:"delay"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.DelayStr != nil {
		body.Delay = time.Duration(*body.DelayStr)
	}
	s.SetWebhookFaults(body.WebhookFaults)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) ctlAPIToken(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		Email string `json:"email"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Email == "" {
		ctlFail(w, errors.New("email is required"))
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"email": body.Email, "token": s.APIToken(body.Email)})
}

func (s *Sim) ctlPAT(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		User string `json:"user"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.User == "" {
		ctlFail(w, errors.New("user is required"))
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"user": body.User, "token": s.PAT(body.User)})
}

func (s *Sim) ctlPassword(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.User == "" || body.Password == "" {
		ctlFail(w, errors.New("user and password are required"))
		return
	}
	s.SetPassword(body.User, body.Password)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) ctlGrant(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		Email  string   `json:"email"`
		Scopes []string `json:"scopes"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Email == "" {
		body.Email = s.AdminUser().Email
	}
	tok, err := s.GrantOAuth(body.Email, body.Scopes...)
	if err != nil {
		ctlFail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, tok)
}

func (s *Sim) ctlRevoke(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		Email string `json:"email"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": s.RevokeOAuthGrants(body.Email)})
}

func (s *Sim) ctlConsent(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		Deny bool   `json:"deny"`
		User string `json:"user"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	s.SetConsentDenied(body.Deny)
	s.SetConsentUser(body.User)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) ctlAdvance(w http.ResponseWriter, r *http.Request, _ string) {
	var body struct {
		By duration `json:"by"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	s.AdvanceClock(time.Duration(body.By))
	writeJSON(w, http.StatusOK, map[string]string{"now": s.Now().Format(jiraTimeLayout)})
}
