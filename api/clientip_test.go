package api

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestClientIPTakesEveryForwardedForLine: the client is the right-most address that is not a
// trusted proxy, across all X-Forwarded-For lines in order, so a proxy appending a line of its own
// cannot be outvoted by a forged first line.
func TestClientIPTakesEveryForwardedForLine(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		name   string
		remote string
		lines  []string
		want   string
	}{
		{"direct peer, header ignored", "198.51.100.9:1234", []string{"10.1.1.1"}, "198.51.100.9"},
		{"one line", "10.0.0.2:1234", []string{"203.0.113.5"}, "203.0.113.5"},
		{"forged first line, real client appended by the proxy", "10.0.0.2:1234", []string{"10.20.3.4", "198.51.100.7"}, "198.51.100.7"},
		{"forged list, real client appended", "10.0.0.2:1234", []string{"10.9.9.9, 10.8.8.8", "203.0.113.1, 10.0.0.3"}, "203.0.113.1"},
		{"only proxies", "10.0.0.2:1234", []string{"10.0.0.4", "10.0.0.3"}, "10.0.0.4"},
		{"malformed hop stops the walk", "10.0.0.2:1234", []string{"203.0.113.1", "nonsense"}, "10.0.0.2"},
		{"IPv4-mapped peer", "[::ffff:10.0.0.2]:1234", []string{"203.0.113.8"}, "203.0.113.8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
			for _, l := range tc.lines {
				r.Header.Add("X-Forwarded-For", l)
			}
			assert.Equal(t, netip.MustParseAddr(tc.want), clientIP(r, trusted))
		})
	}
}
