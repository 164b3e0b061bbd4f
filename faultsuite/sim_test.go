package faultsuite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

// simProc is a Jira simulator running as its own process (cmd/jirasim), driven through its
// /_sim/ control API, which is never subject to the faults it injects.
type simProc struct {
	t      *testing.T
	proc   *process
	URL    string
	flavor string
}

// simSpec seeds a simulator.
type simSpec struct {
	name   string
	flavor string // cloud or datacenter
	issues int    // seeded issues over 5 projects (the first is SEC)
	// tokenTTL is the OAuth access-token lifetime (1h when zero); noLeeway makes any reuse of a
	// rotated refresh token revoke the grant, as Atlassian may (its leeway is 10 minutes today).
	tokenTTL time.Duration
	noLeeway bool
}

func (s *stack) startSim(spec simSpec) *simProc {
	s.t.Helper()
	port := freePort(s.t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	m := &simProc{t: s.t, URL: base, flavor: spec.flavor}
	args := []string{"-listen", "127.0.0.1:" + strconv.Itoa(port), "-flavor", spec.flavor, "-projects", "5",
		"-issues", strconv.Itoa(spec.issues), "-security-share", "0.3", "-resolved-recent-share", "0.5", "-seed", "7"}
	if spec.tokenTTL > 0 {
		args = append(args, "-access-token-ttl", spec.tokenTTL.String())
	}
	if spec.noLeeway {
		args = append(args, "-refresh-leeway", "0")
	}
	m.proc = newProcess(s.t, spec.name, binJirasim, args, nil, filepath.Join(s.logDir, spec.name+".log"),
		func(ctx context.Context) error { return m.ctl(ctx, "GET", "/_sim/info", nil, nil) })
	s.procs = append(s.procs, m.proc)
	m.proc.start(30 * time.Second)
	return m
}

var simHTTP = &http.Client{Timeout: 30 * time.Second}

// ctl calls the control API; out (if not nil) receives the JSON answer.
func (m *simProc) ctl(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.URL+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := simHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return &simError{status: resp.StatusCode, body: string(raw), what: method + " " + path}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decode %q: %w", method, path, raw, err)
		}
	}
	return nil
}

type simError struct {
	status     int
	body, what string
}

func (e *simError) Error() string {
	return fmt.Sprintf("simulator %s: %d %s", e.what, e.status, e.body)
}

func (m *simProc) mustCtl(method, path string, body, out any) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.ctl(ctx, method, path, body, out); err != nil {
		m.t.Fatal(err)
	}
}

// setFault installs a fault for a route pattern (see jirasim.Sim.SetFault). Several faults may
// match one request, but each route string holds one fault.
func (m *simProc) setFault(route string, f jirasim.Fault) {
	m.t.Helper()
	m.mustCtl("PUT", "/_sim/faults", map[string]any{"route": route, "fault": f}, nil)
}

func (m *simProc) clearFaults() {
	m.t.Helper()
	m.mustCtl("DELETE", "/_sim/faults", nil, nil)
}

// requests returns the request log (oldest first, control requests excluded).
func (m *simProc) requests() []jirasim.RequestRecord {
	m.t.Helper()
	var out []jirasim.RequestRecord
	m.mustCtl("GET", "/_sim/requests", nil, &out)
	return out
}

// apiToken returns the Cloud API token of a user; pat the Data Center personal access token.
func (m *simProc) apiToken(email string) string {
	m.t.Helper()
	var out struct{ Token string }
	m.mustCtl("POST", "/_sim/credentials/api-token", map[string]string{"email": email}, &out)
	return out.Token
}

func (m *simProc) pat(user string) string {
	m.t.Helper()
	var out struct{ Token string }
	m.mustCtl("POST", "/_sim/credentials/pat", map[string]string{"user": user}, &out)
	return out.Token
}

// issue returns one issue (ok false when there is none).
func (m *simProc) issue(key string) (jirasim.Issue, bool) {
	m.t.Helper()
	var is jirasim.Issue
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := m.ctl(ctx, "GET", "/_sim/issues/"+url.PathEscape(key), nil, &is)
	if se, ok := err.(*simError); ok && se.status == http.StatusNotFound {
		return jirasim.Issue{}, false
	}
	if err != nil {
		m.t.Fatal(err)
	}
	return is, true
}

// issueCount is the number of issues on the site.
func (m *simProc) issueCount() int {
	m.t.Helper()
	var info struct {
		Issues int `json:"issues"`
	}
	m.mustCtl("GET", "/_sim/info", nil, &info)
	return info.Issues
}

// markedIssues returns the SEC issues that carry an issue marker label, by marker. Issue keys
// are numbered per project, so SEC-1 … SEC-<site total> covers every SEC issue.
func (m *simProc) markedIssues() map[string][]jirasim.Issue {
	m.t.Helper()
	out := map[string][]jirasim.Issue{}
	total := m.issueCount()
	for i := 1; i <= total; i++ {
		is, ok := m.issue("SEC-" + strconv.Itoa(i))
		if !ok {
			continue
		}
		for _, l := range is.Labels {
			if strings.HasPrefix(l, "jc-") {
				out[l] = append(out[l], is)
			}
		}
	}
	return out
}

// transition moves an issue as a human would in Jira.
func (m *simProc) transition(key, status string) {
	m.t.Helper()
	m.mustCtl("POST", "/_sim/issues/"+url.PathEscape(key)+"/transition", map[string]string{"status": status}, nil)
}

// createsCommittedSince counts issue creates Jira answered 201 after t (their response may still
// be on its way, or lost).
func (m *simProc) createsCommittedSince(t time.Time) int {
	n := 0
	for _, r := range m.requests() {
		if r.Operation == jirasim.OpIssueCreate && r.Status == http.StatusCreated && r.Time.After(t) {
			n++
		}
	}
	return n
}
