package jira_test

import (
	"bytes"
	"context"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/jira"
)

// tableResolver resolves names from a map; any other name does not exist, and the error names
// the (internal) resolver, as real resolver errors do.
type tableResolver map[string]string

func (r tableResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.9.9.9:53", IsNotFound: true}
}

func policy(t *testing.T, allow string, r egress.Resolver) *egress.Policy {
	t.Helper()
	list, err := egress.ParseAllowList(allow)
	require.NoError(t, err)
	return egress.New(list, egress.Options{Resolver: r})
}

func countingServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"accountId":"1","displayName":"x"}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func hostPort(t *testing.T, raw string) (string, string) {
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Hostname(), u.Port()
}

func myselfWith(t *testing.T, base string, hc *http.Client, log *slog.Logger) error {
	t.Helper()
	c, err := jira.New(jira.Config{Flavor: jira.DataCenter, BaseURL: base, Auth: jira.PAT(jira.NewSecret("pat-secret-value")), HTTPClient: hc, Logger: log})
	require.NoError(t, err)
	_, err = c.Myself(context.Background())
	return err
}

// A destination the egress policy refuses is a typed, non-retryable error whose text names the
// policy but not the address; nothing reaches the destination; the log has the detail.
func TestEgressDeniedIsACategory(t *testing.T) {
	t.Parallel()
	srv, hits := countingServer(t)
	host, port := hostPort(t, srv.URL)
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	p := policy(t, "", tableResolver{"rebound.example.com": host})
	for _, base := range []string{srv.URL, "https://rebound.example.com:" + port} {
		err := myselfWith(t, base, p.HTTPClient(), log)
		je := kindIs(t, err, jira.KindEgressDenied)
		assert.ErrorIs(t, err, jira.ErrEgressDenied)
		assert.ErrorIs(t, err, egress.ErrDenied)
		assert.False(t, jira.Retryable(err))
		assert.Contains(t, je.Error(), egress.EnvVar)
		assert.NotContains(t, je.Error(), host, "the error names the refused address")
		assert.NotContains(t, je.Error(), port)
	}
	assert.Zero(t, hits.Load())
	assert.Contains(t, logs.String(), "jira call refused by the egress policy")
	assert.Contains(t, logs.String(), host, "the log keeps the refused address")
}

// Transport and TLS failures are categories; the dialer's, resolver's and TLS stack's text (which
// names addresses, ports, the resolver and certificate names) is logged only.
func TestTransportFailuresAreCategories(t *testing.T) {
	t.Parallel()
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	tlsSrv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the refused handshakes are expected
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	plain, _ := countingServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, plainPort := hostPort(t, plain.URL)
	_, tlsPort := hostPort(t, tlsSrv.URL)
	_, closedPort := hostPort(t, "http://"+closedAddr)

	p := policy(t, egress.Loopback, tableResolver{})
	for _, tc := range []struct {
		base, want, port string
		kind             jira.Kind
	}{
		{"http://" + closedAddr, "could not connect to the site", closedPort, jira.KindTransport},
		{"https://nowhere.example.com", "the site's host name does not resolve", "", jira.KindTransport},
		{tlsSrv.URL, "the certificate is not issued by a trusted authority", tlsPort, jira.KindTLS},
		{"https://127.0.0.1:" + plainPort, "the site did not answer with TLS", plainPort, jira.KindTLS},
	} {
		var logs bytes.Buffer
		err := myselfWith(t, tc.base, p.HTTPClient(), slog.New(slog.NewJSONHandler(&logs, nil)))
		je := kindIs(t, err, tc.kind)
		msg := je.Error()
		assert.Contains(t, msg, tc.want, tc.base)
		assert.True(t, jira.Retryable(err), tc.base)
		for _, leak := range []string{"127.0.0.1", "10.9.9.9", "dial tcp", "lookup", "x509", "example.com", "connect:"} {
			assert.NotContains(t, msg, leak, tc.base)
		}
		if tc.port != "" {
			assert.NotContains(t, msg, tc.port, tc.base)
		}
		assert.Contains(t, logs.String(), "jira call failed", tc.base)
		assert.Contains(t, logs.String(), `"cause"`, tc.base)
	}
}

// A redirect is reported without its target, and its target is never requested.
func TestRedirectTargetIsNeitherNamedNorReached(t *testing.T) {
	t.Parallel()
	target, hits := countingServer(t)
	for _, location := range []string{target.URL + "/internal/secret", "http://169.254.169.254/latest/meta-data/iam"} {
		redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, location, http.StatusFound)
		}))
		t.Cleanup(redirector.Close)
		var logs bytes.Buffer
		err := myselfWith(t, redirector.URL, policy(t, egress.Loopback, nil).HTTPClient(), slog.New(slog.NewJSONHandler(&logs, nil)))
		je := kindIs(t, err, jira.KindConfig)
		assert.Contains(t, je.Error(), "unexpected redirect")
		u, _ := url.Parse(location)
		assert.NotContains(t, je.Error(), u.Host)
		assert.NotContains(t, je.Error(), "/internal/secret")
		assert.True(t, strings.Contains(logs.String(), u.Host), "the log names the redirect target")
	}
	assert.Zero(t, hits.Load(), "the redirect target received a request")
}

// OAuth token and accessible-resources calls through the guarded client are refused the same
// way (the app's URLs are the operator's, but a misconfigured one must not reach a private host).
func TestOAuthCallsAreGuarded(t *testing.T) {
	t.Parallel()
	srv, hits := countingServer(t)
	app := &jira.OAuthApp{ClientID: "id", ClientSecret: jira.NewSecret("client-secret"), RedirectURL: "https://app.example/cb",
		AuthBaseURL: srv.URL, APIBaseURL: srv.URL, HTTPClient: policy(t, "", nil).HTTPClient(), Logger: quiet()}
	_, err := app.Exchange(context.Background(), "code")
	kindIs(t, err, jira.KindEgressDenied)
	_, err = app.AccessibleResources(context.Background(), jira.NewSecret("access-token"))
	kindIs(t, err, jira.KindEgressDenied)
	assert.Zero(t, hits.Load())
}
