package egress_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/egress"
)

// fakeResolver answers from a table that tests change at will (DNS rebinding); "localhost" goes
// to the system resolver, and any other name does not exist.
type fakeResolver struct {
	mu    sync.Mutex
	names map[string][]netip.Addr
}

func newResolver(names map[string]string) *fakeResolver {
	r := &fakeResolver{names: map[string][]netip.Addr{}}
	for n, a := range names {
		r.set(n, strings.Split(a, ",")...)
	}
	return r
}

func (r *fakeResolver) set(name string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.names[name] = nil
	for _, a := range addrs {
		r.names[name] = append(r.names[name], netip.MustParseAddr(a))
	}
}

func (r *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if host == "localhost" {
		return net.DefaultResolver.LookupNetIP(ctx, network, host)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.names[strings.TrimSuffix(host, ".")]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.9.9.9:53", IsNotFound: true}
}

func mustPolicy(t *testing.T, allow string, r egress.Resolver) *egress.Policy {
	t.Helper()
	list, err := egress.ParseAllowList(allow)
	require.NoError(t, err)
	return egress.New(list, egress.Options{Resolver: r})
}

// counting is a server that counts the requests that reach it.
func counting(t *testing.T, tls bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv, &n
}

func port(t *testing.T, srv *httptest.Server) string {
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	return u.Port()
}

func TestCheckURLRefusesHostileURLs(t *testing.T) {
	t.Parallel()
	r := newResolver(map[string]string{
		"evil.test":   "127.0.0.1",
		"meta.test":   "169.254.169.254",
		"aws6.test":   "fd00:ec2::254",
		"mixed.test":  "8.8.8.8,10.0.0.1",
		"cgnat.test":  "100.64.0.9",
		"mapped.test": "::ffff:10.1.2.3",
		"public.test": "8.8.8.8,2606:4700::1111",
		"nat64.test":  "64:ff9b::808:808",
	})
	p := mustPolicy(t, "", r)
	ctx := context.Background()
	denied := []struct {
		url    string
		reason egress.Reason
	}{
		{"http://127.0.0.1:5432", egress.ReasonAddress},
		{"https://127.0.0.1", egress.ReasonAddress},
		{"https://127.0.0.2:8443", egress.ReasonAddress},
		{"https://localhost", egress.ReasonAddress},
		{"https://LOCALHOST.", egress.ReasonAddress},
		{"https://[::1]", egress.ReasonAddress},
		{"https://[::ffff:127.0.0.1]", egress.ReasonAddress},
		{"https://[::ffff:7f00:1]", egress.ReasonAddress},
		{"https://[0:0:0:0:0:ffff:7f00:1]", egress.ReasonAddress},
		{"https://[::127.0.0.1]", egress.ReasonAddress},
		{"https://[64:ff9b::7f00:1]", egress.ReasonAddress},
		{"https://[2002:7f00:1::1]", egress.ReasonAddress},
		{"https://[fe80::1%25eth0]", egress.ReasonHost},
		{"https://[fe80::1]", egress.ReasonAddress},
		{"https://[fd00:ec2::254]", egress.ReasonAddress},
		{"https://[fc00::1]", egress.ReasonAddress},
		{"https://[ff02::1]", egress.ReasonAddress},
		{"https://[::]", egress.ReasonAddress},
		{"https://169.254.169.254/latest/meta-data", egress.ReasonAddress},
		{"https://0.0.0.0", egress.ReasonAddress},
		{"https://10.0.0.1", egress.ReasonAddress},
		{"https://172.16.5.4", egress.ReasonAddress},
		{"https://192.168.1.1", egress.ReasonAddress},
		{"https://100.64.0.1", egress.ReasonAddress},
		{"https://255.255.255.255", egress.ReasonAddress},
		{"https://224.0.0.1", egress.ReasonAddress},
		{"https://198.18.0.1", egress.ReasonAddress},
		{"https://192.0.2.1", egress.ReasonAddress},
		{"https://2130706433", egress.ReasonHost},
		{"https://0x7f.1", egress.ReasonHost},
		{"https://0x7f000001", egress.ReasonHost},
		{"https://0177.0.0.1", egress.ReasonHost},
		{"https://127.1", egress.ReasonHost},
		{"https://127.0.0.1.", egress.ReasonHost},
		{"https://0x7F.0.0.1", egress.ReasonHost},
		{"https://evil.test", egress.ReasonAddress},
		{"https://meta.test", egress.ReasonAddress},
		{"https://aws6.test", egress.ReasonAddress},
		{"https://mixed.test", egress.ReasonAddress},
		{"https://cgnat.test", egress.ReasonAddress},
		{"https://mapped.test", egress.ReasonAddress},
		{"https://user:pw@public.test", egress.ReasonHost},
		{"https://public.test@127.0.0.1", egress.ReasonHost},
		{"http://public.test", egress.ReasonScheme},
		{"ftp://public.test", egress.ReasonHost},
		{"https://ex\u00e4mple.com", egress.ReasonHost},
		{"https://under-.test", egress.ReasonHost},
		{"https://public.test:0", egress.ReasonHost},
		{"https://public.test:70000", egress.ReasonHost},
	}
	for _, tc := range denied {
		err := p.CheckURL(ctx, tc.url)
		var de *egress.DeniedError
		if assert.ErrorAs(t, err, &de, tc.url) {
			assert.Equal(t, tc.reason, de.Reason, "%s: %v", tc.url, err)
			assert.ErrorIs(t, err, egress.ErrDenied)
			assert.NotContains(t, de.Public(), "10.0.0.1", tc.url)
			assert.NotContains(t, de.Public(), "169.254", tc.url)
			assert.NotContains(t, de.Public(), "127.0.0.1", tc.url)
			if tc.reason != egress.ReasonHost {
				assert.Contains(t, de.Public(), egress.EnvVar, tc.url)
			}
		}
	}
	for _, ok := range []string{"https://public.test", "https://PUBLIC.test./rest", "https://8.8.8.8", "https://[2606:4700::1111]:8443",
		"https://nat64.test", "https://unknown.test", "https://your-domain.atlassian.net"} {
		assert.NoError(t, p.CheckURL(ctx, ok), ok)
	}
}

func TestAllowListWidensThePolicy(t *testing.T) {
	t.Parallel()
	r := newResolver(map[string]string{"jira.corp.example": "169.254.1.1", "other.corp.example": "10.20.1.2", "far.corp.example": "10.99.0.1"})
	p := mustPolicy(t, "10.20.0.0/16, 192.168.7.7 ,jira.corp.example", r)
	ctx := context.Background()
	for _, ok := range []string{"http://10.20.3.4:8080", "https://10.20.3.4", "http://192.168.7.7", "https://[::ffff:10.20.0.1]",
		"http://jira.corp.example:8080/jira", "https://jira.corp.example", "https://other.corp.example"} {
		assert.NoError(t, p.CheckURL(ctx, ok), ok)
	}
	for _, bad := range []string{"https://10.21.0.1", "https://192.168.7.8", "https://far.corp.example",
		// http only to listed destinations: a name merely resolving into a listed CIDR is not one.
		"http://other.corp.example", "http://8.8.8.8", "https://127.0.0.1"} {
		assert.ErrorIs(t, p.CheckURL(ctx, bad), egress.ErrDenied, bad)
	}
}

func TestParseAllowList(t *testing.T) {
	t.Parallel()
	a, err := egress.ParseAllowList(" 10.0.0.0/8, 192.168.1.7 ,2001:db8::/32,,Jira.Corp.Example., ::1, 10.1.2.3/8, jira.corp.example")
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.0/8,192.168.1.7/32,2001:db8::/32,::1/128,jira.corp.example", a.String())
	b, err := egress.ParseAllowList(a.String())
	require.NoError(t, err)
	assert.Equal(t, a, b)
	empty, err := egress.ParseAllowList("  ")
	require.NoError(t, err)
	assert.Empty(t, empty.String())
	lo, err := egress.ParseAllowList(egress.Loopback)
	require.NoError(t, err)
	assert.Equal(t, egress.Loopback, lo.String())
	for _, bad := range []string{"10.0.0.1/33", "10.0.0.1/8x", "0177.0.0.1", "2130706433", "127.1", "fe80::1%eth0",
		"::ffff:10.0.0.1", "::ffff:10.0.0.0/104", "jira corp", "-bad.example", "*.corp.example", "http://jira", "ex\u00e4mple.com"} {
		_, err := egress.ParseAllowList(bad)
		assert.Error(t, err, bad)
	}
}

// Every call through the client is checked when it dials, on the address it connects to: the
// check at create time is not the only one.
func TestClientRefusesAtDialTime(t *testing.T) {
	t.Parallel()
	srv, hits := counting(t, false)
	r := newResolver(map[string]string{"evil.test": "127.0.0.1"})
	p := mustPolicy(t, "", r)
	for _, target := range []string{srv.URL, "https://evil.test:" + port(t, srv), "https://localhost:" + port(t, srv), "https://[::1]:" + port(t, srv)} {
		_, err := p.HTTPClient().Get(target)
		var de *egress.DeniedError
		require.ErrorAs(t, err, &de, target)
	}
	assert.Zero(t, hits.Load(), "a refused destination received a request")
}

// A name that resolved to an allowed address yesterday and to a private one today is refused
// today: the dialer resolves and checks at every new connection.
func TestClientRefusesDNSRebinding(t *testing.T) {
	t.Parallel()
	srv, hits := counting(t, true)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	// httptest's certificate is valid for example.com; the operator allows the server's address.
	r := newResolver(map[string]string{"example.com": "127.0.0.1"})
	list, err := egress.ParseAllowList("127.0.0.1")
	require.NoError(t, err)
	p := egress.New(list, egress.Options{Resolver: r, RootCAs: pool})
	target := "https://example.com:" + port(t, srv) + "/rest/api/3/myself"
	resp, err := p.HTTPClient().Get(target)
	require.NoError(t, err)
	// Read to the end, so the connection goes back to the pool as it does for the Jira client.
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	require.EqualValues(t, 1, hits.Load())

	for _, private := range []string{"10.0.0.7", "169.254.169.254", "127.0.0.2", "::1"} {
		r.set("example.com", private)
		// Connections already open were checked when they were made and go to the address that
		// was allowed then; a new connection resolves again.
		p.HTTPClient().CloseIdleConnections()
		_, err = p.HTTPClient().Get(target)
		var de *egress.DeniedError
		require.ErrorAs(t, err, &de, private)
		assert.Equal(t, egress.ReasonAddress, de.Reason)
		assert.Equal(t, private, de.Addr.String(), "the log text names the refused address")
		assert.NotContains(t, de.Public(), private)
	}
	assert.EqualValues(t, 1, hits.Load(), "a request reached the server after its name moved to a refused address")
}

// Redirects are not followed by the policy's client, and a client that does follow them through
// the policy's transport is refused at the redirect's target.
func TestRedirectsNeverReachRefusedDestinations(t *testing.T) {
	t.Parallel()
	target, hits := counting(t, false)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/internal", http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	// Only the redirector's host name is allowed; the target is the same machine by address.
	r := newResolver(map[string]string{"jira.allowed.test": "127.0.0.1"})
	p := mustPolicy(t, "jira.allowed.test", r)
	start := "http://jira.allowed.test:" + port(t, redirector) + "/rest/api/2/myself"

	resp, err := p.HTTPClient().Get(start)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusFound, resp.StatusCode, "the policy's client returns the redirect instead of following it")

	following := &http.Client{Transport: p.HTTPClient().Transport}
	_, err = following.Get(start)
	assert.ErrorIs(t, err, egress.ErrDenied)
	assert.Zero(t, hits.Load(), "the redirect target received a request")
}

func TestAllowedDestinationsAreReached(t *testing.T) {
	t.Parallel()
	srv, hits := counting(t, false)
	r := newResolver(map[string]string{"jira.dc.test": "127.0.0.1"})
	for _, tc := range []struct{ allow, url string }{
		{egress.Loopback, srv.URL},
		{"127.0.0.1/32", srv.URL},
		{"jira.dc.test", "http://jira.dc.test:" + port(t, srv)},
	} {
		p := mustPolicy(t, tc.allow, r)
		resp, err := p.HTTPClient().Get(tc.url)
		require.NoError(t, err, tc.allow)
		_ = resp.Body.Close()
	}
	assert.EqualValues(t, 3, hits.Load())
}

func TestDeniedErrorTexts(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, "", newResolver(map[string]string{"rebind.test": "10.0.0.7"}))
	err := p.CheckURL(context.Background(), "https://rebind.test")
	var de *egress.DeniedError
	require.ErrorAs(t, err, &de)
	assert.Contains(t, de.Error(), "rebind.test")
	assert.Contains(t, de.Error(), "10.0.0.7")
	assert.NotContains(t, de.Public(), "10.0.0.7")
	assert.Contains(t, de.Public(), egress.EnvVar)
	assert.True(t, errors.Is(err, egress.ErrDenied))
}
