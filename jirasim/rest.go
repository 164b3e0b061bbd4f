package jirasim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// apiError is an error whose text is a Jira-style message returned to API callers verbatim
// (capitalised and punctuated like Jira's, unlike ordinary Go error strings).
type apiError struct{ msg string }

func (e *apiError) Error() string { return e.msg }

func apiErr(format string, a ...any) error { return &apiError{fmt.Sprintf(format, a...)} }

// call is the per-request context handed to REST handlers.
type call struct {
	p       principal
	rc      rctx
	gateway bool
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, c *call)

// recorder captures the status code; buffered mode holds the whole response for body faults.
type recorder struct {
	http.ResponseWriter
	status   int
	buffered bool
	hdr      http.Header
	buf      bytes.Buffer
}

func (r *recorder) Header() http.Header {
	if r.buffered {
		if r.hdr == nil {
			r.hdr = http.Header{}
		}
		return r.hdr
	}
	return r.ResponseWriter.Header()
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	if !r.buffered {
		r.ResponseWriter.WriteHeader(code)
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.buffered {
		return r.buf.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

// ServeHTTP routes a request: the control API, the OAuth authorization server (Cloud), the 3LO
// gateway, the site REST API and admin webhooks. Every request is recorded and passes through the
// fault rules (except the control API, which must stay reliable).
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p := s.authenticate(r)
	op, h, canon := s.route(r)
	rec := &recorder{ResponseWriter: w}
	var plan faultPlan
	if op != OpControl {
		plan = s.planFaults(r.Method, []string{r.URL.Path, canon})
	}
	record := func(status int) {
		s.reqs.add(RequestRecord{
			Time: s.Now(), Method: r.Method, Path: r.URL.Path, Query: redactQuery(r), Auth: p.kind,
			Status: status, Operation: op, Fault: plan.name(), Duration: time.Since(start),
		})
	}
	if plan.latency > 0 {
		t := time.NewTimer(plan.latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			record(0)
			return
		}
	}
	if plan.reset {
		record(0)
		dropConnection(w)
		return
	}
	if plan.status != 0 {
		for k, v := range plan.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.WriteHeader(plan.status)
		_, _ = io.WriteString(w, plan.body)
		record(plan.status)
		return
	}
	rec.buffered = plan.truncate || plan.malformed || plan.commitDrop
	h(rec, r, &call{p: p})
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if !rec.buffered {
		record(rec.status)
		return
	}
	if plan.commitDrop {
		record(0)
		dropConnection(w)
		return
	}
	for k, v := range rec.hdr {
		w.Header()[k] = v
	}
	body := rec.buf.Bytes()
	switch {
	case plan.malformed:
		body = []byte(`{"errorMessages":[},"issues":[{"id":`)
	case plan.truncate:
		body = body[:len(body)/2]
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.status)
	_, _ = w.Write(body)
	record(rec.status)
}

// redactQuery keeps the query string but never records secrets passed in it.
func redactQuery(r *http.Request) string {
	q := r.URL.Query()
	changed := false
	for _, k := range []string{"code", "client_secret", "access_token", "refresh_token", "token"} {
		if q.Has(k) {
			q.Set(k, "REDACTED")
			changed = true
		}
	}
	if !changed {
		return r.URL.RawQuery
	}
	return q.Encode()
}

// dropConnection closes the client connection without a response: with an RST where the
// connection can be hijacked, otherwise by aborting the handler.
func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

const cloud401 = "Client must be authenticated to access this resource."
const dc401 = "You are not authenticated. Authentication required to perform this operation."

// route resolves the operation name and handler, and the canonical (gateway-stripped) path.
func (s *Sim) route(r *http.Request) (string, handlerFunc, string) {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/_sim/"):
		return OpControl, s.handleControl, path
	case s.flavor == Cloud && path == "/authorize":
		return OpAuthorize, methods(map[string]handlerFunc{"GET": func(w http.ResponseWriter, r *http.Request, _ *call) { s.handleAuthorize(w, r) }}), path
	case s.flavor == Cloud && path == "/oauth/token":
		return OpToken, methods(map[string]handlerFunc{"POST": func(w http.ResponseWriter, r *http.Request, _ *call) { s.handleToken(w, r) }}), path
	case s.flavor == Cloud && path == "/oauth/token/accessible-resources":
		return OpAccessibleResources, methods(map[string]handlerFunc{"GET": func(w http.ResponseWriter, r *http.Request, c *call) { s.handleAccessibleResources(w, r, c.p) }}), path
	case strings.HasPrefix(path, "/rest/webhooks/1.0/webhook"):
		return OpAdminWebhook, s.siteAuth(s.handleAdminWebhooks), path
	}
	gateway := false
	canon := path
	if s.flavor == Cloud && strings.HasPrefix(path, "/ex/jira/") {
		rest := strings.TrimPrefix(path, "/ex/jira/")
		id, tail, _ := strings.Cut(rest, "/")
		if id != s.cloudID {
			return OpNotFound, func(w http.ResponseWriter, _ *http.Request, _ *call) {
				writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "message": "Cloud id not found: the site does not exist or the app is not installed on it."})
			}, path
		}
		gateway = true
		canon = "/" + tail
	}
	if !strings.HasPrefix(canon, "/rest/api/") {
		return OpNotFound, notFound, canon
	}
	verRest := strings.TrimPrefix(canon, "/rest/api/")
	ver, rest, _ := strings.Cut(verRest, "/")
	switch {
	case s.flavor == Cloud && (ver == "2" || ver == "3"):
	case s.flavor == Cloud && ver == "latest" && !gateway:
		ver = "2"
	case s.flavor == DataCenter && (ver == "2" || ver == "latest"):
		ver = "2"
	default:
		return OpNotFound, notFound, canon
	}
	op, h := s.restRoute(r.Method, ver, rest)
	wrapped := func(w http.ResponseWriter, r *http.Request, c *call) {
		c.gateway = gateway
		c.rc = rctx{base: s.BaseURL(), ver: ver, flavor: s.flavor}
		if !s.authorizeREST(w, c, op) {
			return
		}
		h(w, r, c)
	}
	return op, wrapped, canon
}

func notFound(w http.ResponseWriter, r *http.Request, _ *call) {
	writeErrors(w, http.StatusNotFound, []string{fmt.Sprintf("No resource found for %s %s", r.Method, r.URL.Path)}, nil)
}

func methods(m map[string]handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		h, ok := m[r.Method]
		if !ok {
			allowed := make([]string, 0, len(m))
			for k := range m {
				allowed = append(allowed, k)
			}
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeErrors(w, http.StatusMethodNotAllowed, []string{"Method " + r.Method + " is not allowed for this resource."}, nil)
			return
		}
		h(w, r, c)
	}
}

// opScopes are the classic 3LO scopes each operation requires (JIRA-NOTES.md §1.7).
var opScopes = map[string]string{
	OpMyself:           ScopeReadUser,
	OpServerInfo:       ScopeReadWork,
	OpProjectSearch:    ScopeReadWork,
	OpProjectList:      ScopeReadWork,
	OpProjectStatuses:  ScopeReadWork,
	OpFields:           ScopeReadWork,
	OpApproximateCount: ScopeReadWork,
	OpSearchJQL:        ScopeReadWork,
	OpSearchLegacy:     ScopeReadWork,
	OpIssueGet:         ScopeReadWork,
	OpCreateMetaTypes:  ScopeReadWork,
	OpCreateMetaFields: ScopeReadWork,
	OpTransitionsGet:   ScopeReadWork,
	OpIssueCreate:      ScopeWriteWork,
	OpTransitionDo:     ScopeWriteWork,
	OpWebhookList:      ScopeReadWork,
	OpWebhookRegister:  ScopeReadWork,
	OpWebhookDelete:    ScopeReadWork,
	OpWebhookRefresh:   ScopeReadWork,
}

// authorizeREST enforces where each credential kind is accepted: Cloud site path → Basic API
// token only (a 3LO token there is a 401); gateway → 3LO bearer only, with scope checks; Data
// Center → PAT or Basic password.
func (s *Sim) authorizeREST(w http.ResponseWriter, c *call, op string) bool {
	p := c.p
	switch {
	case s.flavor == DataCenter:
		if !p.valid || (p.kind != AuthBearerPAT && p.kind != AuthBasic) {
			w.Header().Set("WWW-Authenticate", `Basic realm="protected-area"`)
			writeErrors(w, http.StatusUnauthorized, []string{dc401}, nil)
			return false
		}
	case c.gateway:
		if p.kind != AuthBearerOAuth || !p.valid {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"code": 401, "message": "Unauthorized"})
			return false
		}
		if need, ok := opScopes[op]; ok && !p.g.has(need) {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"code": 401, "message": "Unauthorized; scope does not match"})
			return false
		}
	default:
		if p.kind != AuthBasic || !p.valid {
			w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, cloud401)
			return false
		}
	}
	return true
}

// siteAuth guards non-/rest/api site resources (admin webhooks): Basic on Cloud, PAT/Basic on DC.
func (s *Sim) siteAuth(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		c.rc = rctx{base: s.BaseURL(), ver: "2", flavor: s.flavor}
		if !s.authorizeREST(w, c, OpAdminWebhook) {
			return
		}
		h(w, r, c)
	}
}

// restRoute maps a /rest/api/{ver}/ resource to its operation and handler.
func (s *Sim) restRoute(method, ver, rest string) (string, handlerFunc) {
	rest = strings.TrimSuffix(rest, "/")
	segs := strings.Split(rest, "/")
	cloud := s.flavor == Cloud
	switch {
	case rest == "myself":
		return OpMyself, methods(map[string]handlerFunc{"GET": s.handleMyself})
	case rest == "serverInfo":
		return OpServerInfo, methods(map[string]handlerFunc{"GET": s.handleServerInfo})
	case rest == "project/search" && cloud:
		return OpProjectSearch, methods(map[string]handlerFunc{"GET": s.handleProjectSearch})
	case rest == "project":
		return OpProjectList, methods(map[string]handlerFunc{"GET": s.handleProjectList})
	case len(segs) == 3 && segs[0] == "project" && segs[2] == "statuses":
		return OpProjectStatuses, methods(map[string]handlerFunc{"GET": s.handleProjectStatuses(segs[1])})
	case rest == "field":
		return OpFields, methods(map[string]handlerFunc{"GET": s.handleFields})
	case rest == "search/approximate-count" && cloud:
		return OpApproximateCount, methods(map[string]handlerFunc{"POST": s.handleApproximateCount})
	case rest == "search/jql" && cloud:
		return OpSearchJQL, methods(map[string]handlerFunc{"GET": s.handleSearchJQL, "POST": s.handleSearchJQL})
	case rest == "search":
		if cloud {
			return OpSearchLegacy, s.handleRemovedSearch
		}
		return OpSearchLegacy, methods(map[string]handlerFunc{"GET": s.handleDCSearch, "POST": s.handleDCSearch})
	case rest == "issue":
		return OpIssueCreate, methods(map[string]handlerFunc{"POST": s.handleCreateIssue})
	case len(segs) == 4 && segs[0] == "issue" && segs[1] == "createmeta" && segs[3] == "issuetypes":
		return OpCreateMetaTypes, methods(map[string]handlerFunc{"GET": s.handleCreateMetaTypes(segs[2])})
	case len(segs) == 5 && segs[0] == "issue" && segs[1] == "createmeta" && segs[3] == "issuetypes":
		return OpCreateMetaFields, methods(map[string]handlerFunc{"GET": s.handleCreateMetaFields(segs[2], segs[4])})
	case len(segs) == 2 && segs[0] == "issue":
		return OpIssueGet, methods(map[string]handlerFunc{"GET": s.handleGetIssue(segs[1])})
	case len(segs) == 3 && segs[0] == "issue" && segs[2] == "transitions":
		if method == http.MethodPost {
			return OpTransitionDo, s.handleDoTransition(segs[1])
		}
		return OpTransitionsGet, methods(map[string]handlerFunc{"GET": s.handleGetTransitions(segs[1])})
	case rest == "webhook" && cloud:
		switch method {
		case http.MethodPost:
			return OpWebhookRegister, s.handleWebhookRegister
		case http.MethodDelete:
			return OpWebhookDelete, s.handleWebhookDelete
		}
		return OpWebhookList, methods(map[string]handlerFunc{"GET": s.handleWebhookList})
	case rest == "webhook/refresh" && cloud:
		return OpWebhookRefresh, methods(map[string]handlerFunc{"PUT": s.handleWebhookRefresh})
	}
	return OpNotFound, notFound
}

// decodeBody decodes a JSON request body, answering 400 in Jira's shape when it is malformed.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
	if err != nil {
		writeErrors(w, http.StatusBadRequest, []string{"Could not read the request body."}, nil)
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		writeErrors(w, http.StatusBadRequest, []string{"No content to map to Object due to end of input"}, nil)
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			writeErrors(w, http.StatusBadRequest, []string{fmt.Sprintf("Unexpected character in the request body at offset %d: %v", se.Offset, se)}, nil)
		case errors.As(err, &te):
			writeErrors(w, http.StatusBadRequest, []string{fmt.Sprintf("Can not deserialize value of field '%s': expected %s but got %s", te.Field, te.Type, te.Value)}, nil)
		default:
			writeErrors(w, http.StatusBadRequest, []string{"The request body is not valid JSON."}, nil)
		}
		return false
	}
	return true
}
