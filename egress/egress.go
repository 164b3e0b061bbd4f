// Package egress is the outbound network policy of Jira traffic. Tenants choose the Jira site a
// connection calls, so without a policy a tenant could make the server reach its own network:
// loopback services, the cloud metadata endpoint, databases and admin consoles on private
// addresses.
//
// A Policy is enforced where it cannot be bypassed: in the dialer of the HTTP client every Jira
// call uses (HTTPClient). The dialer resolves the host itself, checks every address it got, and
// connects only to an address it checked — so DNS rebinding (a name that resolved to a public
// address when the connection was created and to 10.0.0.5 today), redirects and every later call
// (sync, push, webhook registration, OAuth token exchange) are covered, not only the request that
// created the connection. A socket-level Control hook checks the connected address once more.
//
// By default only public unicast addresses are reachable, and only over https: loopback,
// RFC 1918 private, link-local (169.254.169.254, fd00:ec2::254 and the like), CGNAT
// (100.64.0.0/10), unique-local (fc00::/7), multicast, unspecified, broadcast, documentation,
// benchmarking and reserved ranges are refused, and so are IPv4-mapped, NAT64 and 6to4 forms of
// them (the IANA special-purpose registries, via code.dny.dev/ssrf). The operator can allow more
// with an AllowList (JIRA_EGRESS_ALLOW): CIDRs and single addresses, which may then be reached, and
// exact host names, which may resolve to any address. Plain http:// is allowed only to listed
// destinations: a listed host name, or an IP literal inside a listed CIDR.
//
// The client ignores HTTP_PROXY/HTTPS_PROXY: a proxy resolves and connects on the client's behalf,
// where no dial-time check can see the real destination.
package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.dny.dev/ssrf"
)

// EnvVar is the configuration variable that holds the operator's allow list. Tenant-facing
// denials name it, so a tenant knows whom to ask.
const EnvVar = "JIRA_EGRESS_ALLOW"

// Loopback is the allow list of the dev stack, the demo and the test harnesses, whose Jira is the
// simulator on a loopback address. Production leaves JIRA_EGRESS_ALLOW empty.
const Loopback = "127.0.0.0/8,::1/128"

// Default limits of the guarded client's dialer.
const (
	defaultDialTimeout = 30 * time.Second
	minPartialTimeout  = 2 * time.Second
)

// nat64 is the well-known NAT64 prefix (RFC 6052). An address in it stands for the IPv4 address in
// its last 32 bits, which is what the policy judges: an IPv6-only host reaches public IPv4 sites
// through it, and 64:ff9b::7f00:1 (127.0.0.1) stays refused.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Resolver looks up host names; *net.Resolver implements it. Tests inject their own to make a name
// resolve to any address.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options tune a Policy; the zero value is production's.
type Options struct {
	// Resolver defaults to net.DefaultResolver.
	Resolver Resolver
	// RootCAs are the certificate authorities TLS trusts; nil means the system's.
	RootCAs *x509.CertPool
	// DialTimeout bounds one connection attempt over all of a host's addresses (default 30s, as
	// net/http's default transport).
	DialTimeout time.Duration
}

// Policy decides which destinations Jira traffic may reach, and provides the HTTP client that
// enforces it. Build it with New; it is immutable and safe for concurrent use.
type Policy struct {
	allow    AllowList
	hosts    map[string]bool
	resolver Resolver
	guardian *ssrf.Guardian
	timeout  time.Duration
	client   *http.Client
}

// New returns the policy that allows the default plus allow.
func New(allow AllowList, opts Options) *Policy {
	p := &Policy{
		allow:    allow,
		hosts:    make(map[string]bool, len(allow.Hosts)),
		resolver: opts.Resolver,
		// Ports and networks are this package's business (Jira Data Center runs on any port);
		// the guardian judges addresses only.
		guardian: ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork()),
		timeout:  opts.DialTimeout,
	}
	for _, h := range allow.Hosts {
		p.hosts[h] = true
	}
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	if p.timeout <= 0 {
		p.timeout = defaultDialTimeout
	}
	transport := &http.Transport{
		// Never a proxy from the environment: see the package documentation.
		Proxy:                 nil,
		DialContext:           p.dialContext,
		TLSClientConfig:       &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	p.client = &http.Client{
		Transport: &guardedTransport{p: p, next: transport},
		// Jira's REST API does not redirect: a redirect means a wrong base URL (an SSO page), and
		// following it would replay credentials elsewhere. The 3xx is returned to the caller.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p
}

// Allow returns the operator's allow list.
func (p *Policy) Allow() AllowList { return p.allow }

// HTTPClient returns the client every Jira and Atlassian call must use: the policy is checked on
// each request's URL and, at dial time, on each resolved address. It does not follow redirects
// and uses no proxy. The same client is returned every time, so connections are pooled.
func (p *Policy) HTTPClient() *http.Client { return p.client }

// CheckURL checks a site URL before anything is stored or called: the static rules of CheckStatic,
// then, for a host name, the addresses it resolves to now. A name that does not resolve passes
// (the later call reports it unreachable, and the dialer checks again at every call). Denials are
// *DeniedError.
func (p *Policy) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return &DeniedError{Reason: ReasonHost, why: "not a URL"}
	}
	host, literal, err := p.checkURL(u)
	if err != nil {
		return err
	}
	if literal.IsValid() || p.hostListed(host) {
		return nil
	}
	addrs, err := p.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if err := p.checkAddr(host, a, false); err != nil {
			return err
		}
	}
	return nil
}

// CheckStatic applies the rules that need no DNS: http or https only, no user info, a canonical
// host (no decimal, octal or hexadecimal IPv4 forms, no IPv6 zone), an IP literal the policy
// allows, and plain http only to a listed destination. Configuration checks it on operator URLs
// (JIRA_AUTH_URL, JIRA_API_URL).
func (p *Policy) CheckStatic(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return &DeniedError{Reason: ReasonHost, why: "not a URL"}
	}
	_, _, err = p.checkURL(u)
	return err
}

// checkURL is the static check of a request URL. It returns the lower-case host name without a
// trailing dot, and the address when the host is an IP literal.
func (p *Policy) checkURL(u *url.URL) (string, netip.Addr, error) {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", netip.Addr{}, &DeniedError{Reason: ReasonHost, why: "scheme " + strconv.Quote(u.Scheme) + " is not http or https"}
	}
	if u.User != nil {
		return "", netip.Addr{}, &DeniedError{Reason: ReasonHost, why: "the URL contains user info"}
	}
	if u.Opaque != "" || u.Host == "" {
		return "", netip.Addr{}, &DeniedError{Reason: ReasonHost, why: "the URL has no host"}
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", netip.Addr{}, &DeniedError{Reason: ReasonHost, Host: u.Hostname(), why: "port " + strconv.Quote(port) + " is out of range"}
		}
	}
	host, literal, err := canonicalHost(u.Hostname(), strings.HasPrefix(u.Host, "["))
	if err != nil {
		return "", netip.Addr{}, err
	}
	listed := p.hostListed(host)
	if literal.IsValid() {
		if err := p.checkAddr(host, literal, false); err != nil {
			return "", netip.Addr{}, err
		}
		listed = p.prefixListed(literal)
	}
	if scheme == "http" && !listed {
		return "", netip.Addr{}, &DeniedError{Reason: ReasonScheme, Host: host, why: "plain http to a host that is not in " + EnvVar}
	}
	return host, literal, nil
}

// canonicalHost validates a URL's host name (already without brackets and port) and returns it
// lower-case without a trailing dot, plus its address when it is an IP literal. Only the
// canonical forms are accepted: resolvers disagree about "2130706433", "0x7f.1" or "0177.0.0.1"
// (getaddrinfo reads them as 127.0.0.1, Go's resolver sends them to DNS), so a policy must not
// have to guess which one a later call will use.
func canonicalHost(h string, bracketed bool) (string, netip.Addr, error) {
	if bracketed {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() {
			return "", netip.Addr{}, &DeniedError{Reason: ReasonHost, Host: h, why: "not an IPv6 address"}
		}
		if a.Zone() != "" {
			return "", netip.Addr{}, &DeniedError{Reason: ReasonHost, Host: h, why: "an IPv6 zone names a local interface"}
		}
		return a.String(), a, nil
	}
	h = strings.ToLower(h)
	name := strings.TrimSuffix(h, ".")
	if name == "" || len(name) > 253 {
		return "", netip.Addr{}, &DeniedError{Reason: ReasonHost, Host: h, why: "empty or overlong host name"}
	}
	labels := strings.Split(name, ".")
	if numericLabel(labels[len(labels)-1]) {
		// An IP address, or something a resolver may read as one: only dotted-quad IPv4 without
		// leading zeros passes.
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is4() || a.String() != h {
			return "", netip.Addr{}, &DeniedError{Reason: ReasonHost, Host: h, why: "not a canonical IPv4 address"}
		}
		return h, a, nil
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", netip.Addr{}, &DeniedError{Reason: ReasonHost, Host: h, why: "not a valid host name"}
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", netip.Addr{}, &DeniedError{Reason: ReasonHost, Host: h, why: "not a valid host name (use the xn-- form of international names)"}
			}
		}
	}
	return name, netip.Addr{}, nil
}

// numericLabel reports whether a DNS label could be (part of) a numeric IPv4 form: decimal,
// octal or 0x-hexadecimal digits. No top-level domain is numeric, so such a last label means an
// address, not a name.
func numericLabel(l string) bool {
	if l == "" {
		return false
	}
	digits := l
	hex := false
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		digits, hex = l[2:], true
		if digits == "" {
			return true
		}
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		isDigit := c >= '0' && c <= '9'
		isHex := c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
		if !isDigit && !(hex && isHex) {
			return false
		}
	}
	return true
}

// hostListed reports whether the operator listed this host name (lower-case, no trailing dot).
func (p *Policy) hostListed(host string) bool {
	return p.hosts[host]
}

// prefixListed reports whether a listed CIDR contains a.
func (p *Policy) prefixListed(a netip.Addr) bool {
	a = a.Unmap()
	for _, pfx := range p.allow.Prefixes {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// checkAddr decides one address of host. listed is whether the host name itself is allowed,
// which allows any address except those that are never a destination.
func (p *Policy) checkAddr(host string, a netip.Addr, listed bool) error {
	if a.Zone() != "" {
		return &DeniedError{Reason: ReasonHost, Host: host, Addr: a, why: "an IPv6 zone names a local interface"}
	}
	u := a.Unmap()
	if !u.IsValid() || u.IsUnspecified() || u.IsMulticast() || u == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return &DeniedError{Reason: ReasonAddress, Host: host, Addr: a, why: "unspecified, multicast and broadcast addresses are never a destination"}
	}
	if listed || p.prefixListed(u) {
		return nil
	}
	if nat64.Contains(u) {
		b := u.As16()
		return p.checkAddr(host, netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), false)
	}
	if err := p.guardian.SafeAddr(u); err != nil {
		return &DeniedError{Reason: ReasonAddress, Host: host, Addr: a, why: "not a public address and not in " + EnvVar}
	}
	return nil
}

// guardedTransport checks every request's URL before it is sent, so a plain http:// request to an
// unlisted host never leaves (the dialer would not know the scheme).
type guardedTransport struct {
	p    *Policy
	next *http.Transport
}

func (t *guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, _, err := t.p.checkURL(req.URL); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	return t.next.RoundTrip(req)
}

// CloseIdleConnections closes pooled connections (http.Client.CloseIdleConnections calls it).
func (t *guardedTransport) CloseIdleConnections() { t.next.CloseIdleConnections() }

// dialContext resolves the host, checks every address and dials only checked addresses, each
// socket checked once more by the Control hook. A name with any refused address is refused as a
// whole: a mix of public and private answers is a rebinding attempt, not a Jira site.
func (p *Policy) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var lookupNet string
	switch network {
	case "tcp":
		lookupNet = "ip"
	case "tcp4":
		lookupNet = "ip4"
	case "tcp6":
		lookupNet = "ip6"
	default:
		return nil, &DeniedError{Reason: ReasonHost, why: "network " + network + " is not TCP"}
	}
	rawHost, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &DeniedError{Reason: ReasonHost, why: "invalid address"}
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, &DeniedError{Reason: ReasonHost, Host: rawHost, why: "invalid port"}
	}
	var addrs []netip.Addr
	host := rawHost
	if a, err := netip.ParseAddr(rawHost); err == nil {
		addrs = []netip.Addr{a}
	} else {
		var literal netip.Addr
		if host, literal, err = canonicalHost(rawHost, false); err != nil {
			return nil, err
		}
		if literal.IsValid() {
			addrs = []netip.Addr{literal}
		} else if addrs, err = p.resolver.LookupNetIP(ctx, lookupNet, strings.ToLower(rawHost)); err != nil {
			return nil, err
		} else if len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
	}
	listed := p.hostListed(host)
	for _, a := range addrs {
		if err := p.checkAddr(host, a, listed); err != nil {
			return nil, err
		}
	}
	return p.dialChecked(ctx, network, host, listed, addrs, uint16(port))
}

// dialChecked connects to the first of addrs that answers, splitting the time left between the
// addresses still to try (as net.Dialer does for its own lookups).
func (p *Policy) dialChecked(ctx context.Context, network, host string, listed bool, addrs []netip.Addr, port uint16) (net.Conn, error) {
	deadline := time.Now().Add(p.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	control := func(_ context.Context, _, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return &DeniedError{Reason: ReasonHost, Host: host, why: "unparsable socket address"}
		}
		return p.checkAddr(host, ap.Addr(), listed)
	}
	var first error
	for i, a := range addrs {
		timeout := time.Until(deadline) / time.Duration(len(addrs)-i)
		if timeout < minPartialTimeout {
			timeout = min(minPartialTimeout, time.Until(deadline))
		}
		d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, ControlContext: control}
		conn, err := d.DialContext(ctx, network, netip.AddrPortFrom(a, port).String())
		if err == nil {
			return conn, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil || time.Until(deadline) <= 0 {
			break
		}
	}
	return nil, first
}

// ErrDenied matches every *DeniedError with errors.Is.
var ErrDenied = errors.New("egress denied by policy")

// Reason says why a destination was refused.
type Reason string

// Reasons of a DeniedError.
const (
	// ReasonAddress: the host is, or resolves to, an address that is not public and not listed.
	ReasonAddress Reason = "address"
	// ReasonScheme: plain http to a destination that is not listed.
	ReasonScheme Reason = "scheme"
	// ReasonHost: not a URL or host the policy can judge: user info, an IPv6 zone, a numeric
	// IPv4 form other than dotted decimal, an invalid host name, a scheme other than http(s).
	ReasonHost Reason = "host"
)

// DeniedError is a destination the policy refused. Its Error text names the host and the
// resolved address, for the server log only; Public is what a tenant may see.
type DeniedError struct {
	Reason Reason
	Host   string
	Addr   netip.Addr // the refused address, when one was resolved or given
	why    string
}

// Error describes the denial in full (host and address): log it, never show it to a tenant.
func (e *DeniedError) Error() string {
	var b strings.Builder
	b.WriteString("egress denied")
	if e.Host != "" {
		b.WriteString(": ")
		b.WriteString(e.Host)
	}
	if e.Addr.IsValid() && e.Addr.String() != e.Host {
		b.WriteString(" (")
		b.WriteString(e.Addr.String())
		b.WriteString(")")
	}
	if e.why != "" {
		b.WriteString(": ")
		b.WriteString(e.why)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// Public is the denial as a tenant may see it: the category and the policy, never the address a
// name resolved to (that would let a tenant map the server's network through its resolver).
func (e *DeniedError) Public() string {
	switch e.Reason {
	case ReasonScheme:
		return "this server's egress policy allows plain http:// only to hosts an operator listed in " + EnvVar + "; use https://"
	case ReasonHost:
		return "the URL is not one the egress policy accepts (" + e.publicWhy() + ")"
	}
	return "the site's address is not a public internet address, and this server's egress policy does not allow it (an operator can allow private destinations in " + EnvVar + ")"
}

func (e *DeniedError) publicWhy() string {
	if e.why == "" {
		return "invalid host"
	}
	return e.why
}

// AllowList is the operator's allowance beyond public https destinations.
type AllowList struct {
	// Prefixes may be reached, also over plain http. A single address is a /32 or /128.
	Prefixes []netip.Prefix
	// Hosts are exact host names (lower-case, no trailing dot) that may resolve to any address
	// except unspecified, multicast and broadcast ones, and may be reached over plain http.
	Hosts []string
}

// ParseAllowList parses JIRA_EGRESS_ALLOW: a comma-separated list of CIDRs (10.20.0.0/16,
// fd12:3456::/48), single IP addresses (10.20.30.40, ::1) and exact host names
// (jira.corp.example). Whitespace around entries and empty entries are ignored. Zoned and
// IPv4-mapped IPv6 forms are refused (write the IPv4 form), and so is anything that is neither an
// address nor a valid host name.
func ParseAllowList(s string) (AllowList, error) {
	var out AllowList
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		switch {
		case strings.Contains(part, "/"):
			pfx, err := netip.ParsePrefix(part)
			if err != nil {
				return AllowList{}, fmt.Errorf("%q is not a CIDR", part)
			}
			if pfx.Addr().Is4In6() {
				return AllowList{}, fmt.Errorf("%q: write IPv4 ranges in IPv4 form", part)
			}
			out.Prefixes = appendPrefix(out.Prefixes, pfx.Masked())
		case strings.Contains(part, ":") || isIPv4Literal(part):
			a, err := netip.ParseAddr(part)
			if err != nil {
				return AllowList{}, fmt.Errorf("%q is not an IP address", part)
			}
			if a.Zone() != "" {
				return AllowList{}, fmt.Errorf("%q: IPv6 zones are not allowed", part)
			}
			if a.Is4In6() {
				return AllowList{}, fmt.Errorf("%q: write IPv4 addresses in IPv4 form", part)
			}
			out.Prefixes = appendPrefix(out.Prefixes, netip.PrefixFrom(a, a.BitLen()))
		default:
			host, literal, err := canonicalHost(part, false)
			if err != nil || literal.IsValid() {
				return AllowList{}, fmt.Errorf("%q is not a CIDR, an IP address or a host name", part)
			}
			if !slices.Contains(out.Hosts, host) {
				out.Hosts = append(out.Hosts, host)
			}
		}
	}
	return out, nil
}

// isIPv4Literal reports whether s looks like an IPv4 address (its last label is numeric), so a
// malformed one is reported as such instead of as a host name.
func isIPv4Literal(s string) bool {
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	return numericLabel(labels[len(labels)-1])
}

func appendPrefix(ps []netip.Prefix, p netip.Prefix) []netip.Prefix {
	if slices.Contains(ps, p) {
		return ps
	}
	return append(ps, p)
}

// String renders the list in the syntax ParseAllowList reads.
func (a AllowList) String() string {
	parts := make([]string, 0, len(a.Prefixes)+len(a.Hosts))
	for _, p := range a.Prefixes {
		parts = append(parts, p.String())
	}
	parts = append(parts, a.Hosts...)
	return strings.Join(parts, ",")
}
