package e2e

import (
	"context"
	"crypto/x509"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/app"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// dnsTable is the egress policy's resolver in these tests: names resolve to what the test says,
// and can move (DNS rebinding). "localhost" goes to the system resolver; other names do not
// exist.
type dnsTable struct {
	mu    sync.Mutex
	names map[string][]netip.Addr
}

func newDNSTable(names map[string]string) *dnsTable {
	d := &dnsTable{names: map[string][]netip.Addr{}}
	for n, a := range names {
		d.set(n, strings.Split(a, ",")...)
	}
	return d
}

func (d *dnsTable) set(name string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.names[name] = nil
	for _, a := range addrs {
		d.names[name] = append(d.names[name], netip.MustParseAddr(a))
	}
}

func (d *dnsTable) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if host == "localhost" {
		return net.DefaultResolver.LookupNetIP(ctx, network, host)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if a, ok := d.names[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.53.0.2:53", IsNotFound: true}
}

// canary counts the requests that reach it: a refused destination must never be contacted.
func canary(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, "internal admin console v3 — token store at /secrets")
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func portOf(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Port()
}

func (s *stack) count(query string, args ...any) int {
	s.t.Helper()
	var n int
	require.NoError(s.t, testDB.Owner(s.t).QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// Under the production policy (nothing allowed beyond public https destinations), every hostile
// site URL is refused at create with 400 egress_denied naming the policy, for every connection
// kind, before anything is stored or any request is sent; the reply never names an address a
// name resolved to.
func TestHostileSiteURLsAreRefusedAtCreate(t *testing.T) {
	dns := newDNSTable(map[string]string{
		"evil.example.com":   "127.0.0.1",
		"meta.example.com":   "169.254.169.254",
		"aws6.example.com":   "fd00:ec2::254",
		"mixed.example.com":  "93.184.216.34,10.0.0.5",
		"cgnat.example.com":  "100.64.3.4",
		"mapped.example.com": "::ffff:192.168.0.10",
	})
	s := newStackWith(t, map[string]string{
		// Production: no allowance, and the real Atlassian endpoints (no call is made here).
		"JIRA_EGRESS_ALLOW": "",
		"JIRA_AUTH_URL":     "https://auth.atlassian.com",
		"JIRA_API_URL":      "https://api.atlassian.com",
	}, app.WithEgressOptions(egress.Options{Resolver: dns}))
	target, hits := canary(t)
	port := portOf(t, target.URL)
	key := s.org("hostile-urls")
	hostile := []string{
		"http://127.0.0.1:" + port,
		"https://127.0.0.1:" + port,
		"https://127.0.0.2:" + port,
		"http://localhost:" + port,
		"https://localhost:" + port,
		"https://[::1]:" + port,
		"http://[::1]:" + port,
		"https://0.0.0.0:" + port,
		"https://169.254.169.254/latest/meta-data",
		"https://[fd00:ec2::254]",
		"https://10.0.0.5:8080",
		"https://172.16.0.1",
		"https://192.168.1.1",
		"https://100.64.0.1",
		"https://2130706433:" + port,
		"https://0x7f.1:" + port,
		"https://0x7f000001:" + port,
		"https://0177.0.0.1:" + port,
		"https://127.1:" + port,
		"https://[::ffff:127.0.0.1]:" + port,
		"https://[::ffff:7f00:1]:" + port,
		"https://[64:ff9b::7f00:1]:" + port,
		"https://[fe80::1%25lo]:" + port,
		"https://[fe80::1]:" + port,
		"https://evil.example.com:" + port,
		"https://meta.example.com",
		"https://aws6.example.com",
		"https://mixed.example.com",
		"https://cgnat.example.com",
		"https://mapped.example.com",
		"http://jira.example.com",
	}
	resolved := []string{"127.0.0.1", "169.254.169.254", "fd00:ec2::254", "10.0.0.5", "100.64.3.4", "192.168.0.10", "10.53.0.2"}
	for _, site := range hostile {
		for _, body := range []map[string]any{
			{"kind": "cloud_token", "site_url": site, "email": "admin@example.com", "api_token": "ATATT-token"},
			{"kind": "datacenter_pat", "site_url": site, "pat": "dc-pat"},
			{"kind": "cloud_oauth", "site_url": site},
		} {
			r := s.call("POST", "/v1/connections", key, body)
			if !assert.Equal(t, 400, r.status, "%s %s: %s", body["kind"], site, r.raw) {
				continue
			}
			assert.Equal(t, "egress_denied", r.str("error", "code"), "%s %s: %s", body["kind"], site, r.raw)
			assert.Equal(t, "site_url", r.str("error", "field"), site)
			assert.Contains(t, r.str("error", "message"), "egress policy", site)
			for _, a := range resolved {
				if !strings.Contains(site, a) {
					assert.NotContains(t, r.raw, a, "%s: the reply names an address the server resolved", site)
				}
			}
		}
	}
	assert.Zero(t, hits.Load(), "a refused destination received a request")
	org := s.call("GET", "/v1/orgs/me", key, nil).str("id")
	assert.Zero(t, s.count(`SELECT count(*) FROM connections WHERE org_id = $1`, org), "a refused site was stored")
	assert.Zero(t, s.count(`SELECT count(*) FROM audit_log WHERE org_id = $1 AND action LIKE 'connection.%'`, org))
	assert.Contains(t, s.logs.String(), "site URL refused by the egress policy", "the refusal and its detail are logged")
	assert.Contains(t, s.logs.String(), "169.254.169.254")
}

// A stored connection whose site name later resolves to a private address: its sync fails with
// egress_denied and sends nothing, and re-authorization is refused the same way. The tenant sees
// the category and the policy, never the address; the server log has it.
func TestSiteThatMovesToAPrivateAddressIsRefused(t *testing.T) {
	quietLog := slog.New(slog.NewTextHandler(io.Discard, nil))
	sim := jirasim.New(jirasim.Options{Flavor: jirasim.Cloud, Logger: quietLog, RandSeed: 3})
	t.Cleanup(func() { _ = sim.Close() })
	if _, err := sim.Seed(7, jirasim.SeedSpec{Projects: 3, Issues: 100, SecurityShare: 0.3, ResolvedRecentShare: 0.5}); err != nil {
		t.Fatal(err)
	}
	// The site is served over TLS under the name httptest's certificate carries (example.com),
	// which first resolves to the simulator's address, the one address the operator allows.
	hs := httptest.NewUnstartedServer(sim)
	hs.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	hs.StartTLS()
	t.Cleanup(hs.Close)
	site := "https://example.com:" + portOf(t, hs.URL)
	sim.SetBaseURL(site)
	roots := x509.NewCertPool()
	roots.AddCert(hs.Certificate())
	dns := newDNSTable(map[string]string{"example.com": "127.0.0.1"})
	s := newStackWith(t, map[string]string{"JIRA_EGRESS_ALLOW": "127.0.0.1"},
		app.WithEgressOptions(egress.Options{Resolver: dns, RootCAs: roots}))
	key := s.org("rebinding")
	token := sim.APIToken("admin@example.com")
	r := s.call("POST", "/v1/connections", key, map[string]any{"kind": "cloud_token", "site_url": site, "email": "admin@example.com", "api_token": token})
	require.Equal(t, 201, r.status, r.raw)
	connID := r.str("id")
	s.waitSuccessfulSyncs(key, connID, 1)
	version := s.count(`SELECT credentials_version FROM connections WHERE id = $1`, connID)

	dns.set("example.com", "10.0.0.7")
	// Connections already open were checked when they were made; every new one is checked again.
	s.core.Egress.HTTPClient().CloseIdleConnections()
	sim.ResetRequests()

	require.Equal(t, 202, s.call("POST", "/v1/connections/"+connID+"/sync", key, nil).status)
	var failed map[string]any
	s.eventually("the sync after the move fails", 30*time.Second, func() bool {
		for _, run := range s.runs(key, connID) {
			if run["kind"] == "sync" && run["outcome"] == "failed" {
				failed = run
				return true
			}
		}
		return false
	})
	msg, _ := failed["error"].(string)
	assert.Equal(t, "config", failed["error_kind"], "an egress denial is not retried: %v", failed)
	assert.Contains(t, msg, "egress_denied")
	assert.Contains(t, msg, "JIRA_EGRESS_ALLOW")
	assert.NotContains(t, msg, "10.0.0.7")
	conn := s.call("GET", "/v1/connections/"+connID, key, nil)
	assert.Contains(t, conn.str("last_error"), "egress_denied", conn.raw)
	assert.NotContains(t, conn.raw, "10.0.0.7")

	re := s.call("POST", "/v1/connections/"+connID+"/reauth", key, map[string]any{"email": "admin@example.com", "api_token": token})
	assert.Equal(t, 400, re.status, re.raw)
	assert.Equal(t, "egress_denied", re.str("error", "code"), re.raw)
	assert.Equal(t, "site_url", re.str("error", "field"), re.raw)
	assert.NotContains(t, re.raw, "10.0.0.7")
	assert.Equal(t, version, s.count(`SELECT credentials_version FROM connections WHERE id = $1`, connID), "re-auth stored credentials")
	assert.Zero(t, s.count(`SELECT count(*) FROM audit_log WHERE target_id = $1 AND action = 'connection.reauthorize'`, connID))

	assert.Empty(t, sim.Requests(), "the simulator was contacted after its name moved to a refused address")
	assert.Contains(t, s.logs.String(), "10.0.0.7", "the server log names the refused address")
	assert.Contains(t, s.logs.String(), connID, "the server log names the connection")
}

// Failures to reach an allowed site are answered with categories: no dialer or TLS text, no
// redirect target, no body of something that is not Jira; the detail is in the server log.
func TestVerificationFailuresAreCategories(t *testing.T) {
	s := newStack(t)
	key := s.org("categories")
	target, hits := canary(t)
	redirectTo := func(location string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, location, http.StatusFound)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	banner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"status":"error","message":"redis 6.2.1 at cache-01.internal refused AUTH"}`)
	}))
	t.Cleanup(banner.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())

	for _, tc := range []struct {
		site, code string
		status     int
		leaks      []string
	}{
		{redirectTo(target.URL + "/secret-admin"), "jira_unreachable", 502, []string{portOf(t, target.URL), "secret-admin"}},
		{redirectTo("http://169.254.169.254/latest/meta-data/iam"), "jira_unreachable", 502, []string{"169.254", "meta-data"}},
		{target.URL, "credentials_rejected", 400, []string{"internal admin console", "token store"}},
		{banner.URL, "jira_unreachable", 502, []string{"redis", "cache-01", "AUTH"}},
		{"http://" + closed, "jira_unreachable", 502, []string{"dial tcp", "connection refused", "connect:"}},
		{"https://" + strings.TrimPrefix(banner.URL, "http://"), "tls_error", 502, []string{"tls:", "first record", "HTTP response"}},
	} {
		r := s.call("POST", "/v1/connections", key, map[string]any{"kind": "datacenter_pat", "site_url": tc.site, "pat": "dc-pat"})
		assert.Equal(t, tc.status, r.status, "%s: %s", tc.site, r.raw)
		assert.Equal(t, tc.code, r.str("error", "code"), "%s: %s", tc.site, r.raw)
		for _, leak := range tc.leaks {
			assert.NotContains(t, r.raw, leak, tc.site)
		}
	}
	assert.EqualValues(t, 1, hits.Load(), "only the direct call reached the canary; no redirect was followed")
	logs := s.logs.String()
	for _, detail := range []string{"secret-admin", "169.254.169.254", "cache-01.internal", "connection refused"} {
		assert.Contains(t, logs, detail, "the server log keeps the detail")
	}
}
