package jirasim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	msgUnbounded = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
	msgRemoved   = "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
	msgBadToken  = "The provided next page token is invalid or expired."
)

// pageTokenTTL is how long a /search/jql nextPageToken stays valid (JIRA-NOTES.md §3.2).
const pageTokenTTL = 7 * 24 * time.Hour

func jqlHash(jql string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(jql))
	return h.Sum32()
}

func (s *Sim) encodePageToken(jql string, offset int) string {
	raw := fmt.Sprintf("%d.%d.%d", offset, jqlHash(jql), s.Now().Unix())
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// decodePageToken returns the offset a token encodes; tokens are bound to their JQL and expire.
func (s *Sim) decodePageToken(tok, jql string) (int, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, apiErr(msgBadToken)
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 3 {
		return 0, apiErr(msgBadToken)
	}
	off, err1 := strconv.Atoi(parts[0])
	h, err2 := strconv.ParseUint(parts[1], 10, 32)
	ts, err3 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || off < 0 || uint32(h) != jqlHash(jql) {
		return 0, apiErr(msgBadToken)
	}
	if s.Now().Sub(time.Unix(ts, 0)) > pageTokenTTL {
		return 0, apiErr(msgBadToken)
	}
	return off, nil
}

// compileForCall compiles JQL as the calling user.
func (s *Sim) compileLocked(jql string, c *call) (*compiledQuery, error) {
	return compileJQL(jql, compileCtx{st: s.st, now: s.Now(), me: c.p.user + 1})
}

func (s *Sim) lagVisibility(reconcile []int64) *visibility {
	lag := time.Duration(s.searchLag.Load())
	if lag <= 0 {
		return nil
	}
	v := &visibility{cutoff: s.Now().Add(-lag).UnixMilli(), reconcile: map[uint32]bool{}}
	for _, id := range reconcile {
		i := id - issueIDBase
		if i >= 0 && i < int64(len(s.st.issues)) {
			v.reconcile[uint32(i)] = true
		}
	}
	return v
}

func jqlError(w http.ResponseWriter, err error) {
	writeErrors(w, http.StatusBadRequest, []string{err.Error()}, nil)
}

// handleApproximateCount serves POST /search/approximate-count: bounded JQL → {"count":N}.
func (s *Sim) handleApproximateCount(w http.ResponseWriter, r *http.Request, c *call) {
	var body struct {
		JQL string `json:"jql"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	cq, err := s.compileLocked(body.JQL, c)
	if err != nil {
		jqlError(w, err)
		return
	}
	if cq.root == nil {
		writeErrors(w, http.StatusBadRequest, []string{msgUnbounded}, nil)
		return
	}
	n := s.countLocked(cq, s.lagVisibility(nil))
	writeJSON(w, http.StatusOK, map[string]int{"count": n})
}

type searchJQLRequest struct {
	JQL             string   `json:"jql"`
	NextPageToken   string   `json:"nextPageToken"`
	MaxResults      *int     `json:"maxResults"`
	Fields          []string `json:"fields"`
	Expand          string   `json:"expand"`
	Properties      []string `json:"properties"`
	FieldsByKeys    bool     `json:"fieldsByKeys"`
	FailFast        bool     `json:"failFast"`
	ReconcileIssues []int64  `json:"reconcileIssues"`
}

// handleSearchJQL serves GET|POST /search/jql: token paging, isLast, no total, default fields
// id only, bounded JQL, reconcileIssues for read-after-write under search lag.
func (s *Sim) handleSearchJQL(w http.ResponseWriter, r *http.Request, c *call) {
	var req searchJQLRequest
	if r.Method == http.MethodPost {
		if !decodeBody(w, r, &req) {
			return
		}
	} else {
		q := r.URL.Query()
		req.JQL = q.Get("jql")
		req.NextPageToken = q.Get("nextPageToken")
		req.Expand = q.Get("expand")
		req.Fields = q["fields"]
		if v := q.Get("maxResults"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				writeErrors(w, http.StatusBadRequest, []string{"The 'maxResults' parameter must be an integer."}, nil)
				return
			}
			req.MaxResults = &n
		}
		for _, part := range q["reconcileIssues"] {
			for _, v := range strings.Split(part, ",") {
				id, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					writeErrors(w, http.StatusBadRequest, []string{"The 'reconcileIssues' parameter must be a list of issue ids."}, nil)
					return
				}
				req.ReconcileIssues = append(req.ReconcileIssues, id)
			}
		}
	}
	fs := parseFieldSel(req.Fields, "id")
	maxResults := 50
	if req.MaxResults != nil {
		maxResults = *req.MaxResults
	}
	if maxResults < 1 || maxResults > 5000 {
		writeErrors(w, http.StatusBadRequest, []string{"The 'maxResults' parameter must be between 1 and 5000."}, nil)
		return
	}
	if fs.wantsAnyField() {
		// Jira returns fewer issues per page when fields are requested.
		maxResults = min(maxResults, 100)
	}
	if len(req.ReconcileIssues) > 50 {
		writeErrors(w, http.StatusBadRequest, []string{"The 'reconcileIssues' parameter can contain at most 50 issue ids."}, nil)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	offset := 0
	if req.NextPageToken != "" {
		var err error
		if offset, err = s.decodePageToken(req.NextPageToken, req.JQL); err != nil {
			writeErrors(w, http.StatusBadRequest, []string{err.Error()}, nil)
			return
		}
	}
	cq, err := s.compileLocked(req.JQL, c)
	if err != nil {
		jqlError(w, err)
		return
	}
	if cq.root == nil {
		writeErrors(w, http.StatusBadRequest, []string{msgUnbounded}, nil)
		return
	}
	page, more := s.searchLocked(cq, s.lagVisibility(req.ReconcileIssues), offset, maxResults)
	issues := make([]any, 0, len(page))
	budget, used := s.pageBudget.Load(), int64(0)
	for i, idx := range page {
		is := s.renderIssueLocked(c.rc, idx, fs)
		if budget > 0 {
			b, _ := json.Marshal(is)
			if used += int64(len(b)); used > budget && i > 0 {
				page, more = page[:i], true
				break
			}
		}
		issues = append(issues, is)
	}
	out := map[string]any{"issues": issues, "isLast": !more}
	if more {
		out["nextPageToken"] = s.encodePageToken(req.JQL, offset+len(page))
	}
	writeJSON(w, http.StatusOK, out)
}

// handleRemovedSearch answers Cloud's removed /search (v2 and v3) with 410 (JIRA-NOTES.md §3.1).
func (s *Sim) handleRemovedSearch(w http.ResponseWriter, _ *http.Request, _ *call) {
	writeErrors(w, http.StatusGone, []string{msgRemoved}, nil)
}

// handleDCSearch serves Data Center's /rest/api/2/search: startAt/maxResults/total, where
// maxResults=0 returns only the total (answered from aggregates when the JQL allows).
func (s *Sim) handleDCSearch(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		JQL        string   `json:"jql"`
		StartAt    int      `json:"startAt"`
		MaxResults *int     `json:"maxResults"`
		Fields     []string `json:"fields"`
	}
	if r.Method == http.MethodPost {
		if !decodeBody(w, r, &req) {
			return
		}
	} else {
		q := r.URL.Query()
		req.JQL = q.Get("jql")
		req.Fields = q["fields"]
		var err error
		if req.StartAt, err = intParam(r, "startAt", 0); err != nil {
			writeErrors(w, http.StatusBadRequest, []string{err.Error()}, nil)
			return
		}
		if q.Get("maxResults") != "" {
			n, err := intParam(r, "maxResults", 50)
			if err != nil {
				writeErrors(w, http.StatusBadRequest, []string{err.Error()}, nil)
				return
			}
			req.MaxResults = &n
		}
	}
	maxResults := 50
	if req.MaxResults != nil {
		maxResults = *req.MaxResults
	}
	if maxResults < 0 || req.StartAt < 0 {
		writeErrors(w, http.StatusBadRequest, []string{"startAt and maxResults must not be negative."}, nil)
		return
	}
	maxResults = min(maxResults, 1000)
	s.mu.RLock()
	defer s.mu.RUnlock()
	cq, err := s.compileLocked(req.JQL, c)
	if err != nil {
		jqlError(w, err)
		return
	}
	total := s.countLocked(cq, nil)
	issues := []any{}
	if maxResults > 0 && req.StartAt < total {
		fs := parseFieldSel(req.Fields, "*navigable")
		page, _ := s.searchLocked(cq, nil, req.StartAt, maxResults)
		for _, idx := range page {
			issues = append(issues, s.renderIssueLocked(c.rc, idx, fs))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"expand": "schema,names", "startAt": req.StartAt, "maxResults": maxResults, "total": total, "issues": issues})
}

// jsonNumberList accepts [1,2] or ["1","2"] (webhook id lists arrive both ways in the wild).
type jsonNumberList []int64

func (l *jsonNumberList) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for _, r := range raw {
		n, err := strconv.ParseInt(strings.Trim(string(r), `"`), 10, 64)
		if err != nil {
			return fmt.Errorf("%s is not an id", r)
		}
		*l = append(*l, n)
	}
	return nil
}
