package egress

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"code.dny.dev/ssrf"
)

// FuzzParseAllowList: the parser never panics, and what it accepts is canonical and survives a
// round trip through String.
func FuzzParseAllowList(f *testing.F) {
	for _, s := range []string{"", Loopback, "10.0.0.0/8, jira.corp.example", "192.168.1.7,::1", "0177.0.0.1",
		"fe80::1%eth0", "::ffff:10.0.0.0/104", "a..b", "JIRA.example.", "0x7f.1", "10.0.0.1/33", ",,", "x_y.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAllowList(s)
		if err != nil {
			return
		}
		for _, p := range a.Prefixes {
			if p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("%q: non-canonical prefix %s", s, p)
			}
		}
		for _, h := range a.Hosts {
			got, literal, err := canonicalHost(h, false)
			if err != nil || literal.IsValid() || got != h {
				t.Fatalf("%q: host %q is not a canonical host name", s, h)
			}
		}
		b, err := ParseAllowList(a.String())
		if err != nil || b.String() != a.String() {
			t.Fatalf("%q: round trip %q → %q (%v)", s, a.String(), b.String(), err)
		}
	})
}

// FuzzCheckStatic: the URL check is never more lenient than its rules, under the production
// default (nothing listed) and under an allow list. Whatever passes is http(s) without user info,
// https unless its host is listed, and its host is either a canonical IP literal the address rules
// allow or a plain host name that no resolver could read as a numeric IPv4 address.
func FuzzCheckStatic(f *testing.F) {
	for _, s := range []string{"https://your-domain.atlassian.net", "http://127.0.0.1:8080", "https://2130706433", "https://0x7f.1",
		"https://0177.0.0.1", "https://[::ffff:127.0.0.1]", "https://[fe80::1%25eth0]", "https://u:p@x.example", "http://10.20.1.1",
		"http://jira.corp.example:8080/jira", "https://[64:ff9b::808:808]", "https://8.8.8.8.", "HTTPS://Example.COM", "https://a.0x1f"} {
		f.Add(s)
	}
	strict := New(AllowList{}, Options{})
	listed := New(AllowList{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}, Hosts: []string{"jira.corp.example"}}, Options{})
	guardian := ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork())
	f.Fuzz(func(t *testing.T, raw string) {
		for _, p := range []*Policy{strict, listed} {
			if p.CheckStatic(raw) != nil {
				continue
			}
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("%q passed but does not parse", raw)
			}
			scheme := strings.ToLower(u.Scheme)
			if (scheme != "https" && scheme != "http") || u.User != nil {
				t.Fatalf("%q passed with scheme %q / user info", raw, u.Scheme)
			}
			host := strings.ToLower(u.Hostname())
			addr, isIP := netip.Addr{}, false
			if a, err := netip.ParseAddr(host); err == nil {
				addr, isIP = a, true
			}
			if isIP {
				if addr.Zone() != "" {
					t.Fatalf("%q passed with a zone", raw)
				}
				if !p.prefixListed(addr) {
					um := addr.Unmap()
					if nat64.Contains(um) {
						b := um.As16()
						um = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
					}
					if guardian.SafeAddr(um) != nil {
						t.Fatalf("%q passed with a refused address", raw)
					}
				}
			} else if v4, ok := inetAton(strings.TrimSuffix(host, ".")); ok {
				t.Fatalf("%q passed although a resolver may read %q as %s", raw, host, v4)
			}
			if scheme == "http" {
				name := strings.TrimSuffix(host, ".")
				if !(isIP && p.prefixListed(addr)) && !p.hostListed(name) {
					t.Fatalf("%q passed over plain http to an unlisted host", raw)
				}
			}
		}
	})
}

// inetAton reads s as C's inet_aton does (what getaddrinfo accepts for an IPv4 host): one to four
// dot-separated parts, each decimal, octal (leading 0) or hexadecimal (0x).
func inetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) == 0 || len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base := 10
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			p, base = p[2:], 16
			if p == "" {
				p = "0"
			}
		case len(p) > 1 && p[0] == '0':
			p, base = p[1:], 8
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	switch len(vals) {
	case 1:
		n = vals[0]
	case 2:
		if vals[0] > 255 || vals[1] > 0xffffff {
			return netip.Addr{}, false
		}
		n = vals[0]<<24 | vals[1]
	case 3:
		if vals[0] > 255 || vals[1] > 255 || vals[2] > 0xffff {
			return netip.Addr{}, false
		}
		n = vals[0]<<24 | vals[1]<<16 | vals[2]
	case 4:
		for _, v := range vals {
			if v > 255 {
				return netip.Addr{}, false
			}
		}
		n = vals[0]<<24 | vals[1]<<16 | vals[2]<<8 | vals[3]
	}
	if n > 0xffffffff {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}
