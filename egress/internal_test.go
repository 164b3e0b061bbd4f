package egress

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAddressClassification(t *testing.T) {
	t.Parallel()
	p := New(AllowList{}, Options{})
	denied := []string{
		"127.0.0.1", "127.0.0.2", "127.255.255.254", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.255", "0.0.0.0", "0.1.2.3", "255.255.255.255",
		"224.0.0.1", "239.255.255.250", "240.0.0.1", "192.0.2.1", "198.18.0.1", "198.19.255.255", "198.51.100.1",
		"203.0.113.1", "192.0.0.1", "192.88.99.1",
		"::", "::1", "fe80::1", "fc00::1", "fd00:ec2::254", "fd12:3456::1", "ff02::1", "ff05::2", "fec0::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
		"::127.0.0.1", "::10.0.0.1",
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "64:ff9b:1::808:808",
		"2002:7f00:1::1", "2002:a00:1::1", "2002:808:808::1", "2001::1", "2001:0:4136:e378::1",
		"2001:db8::1", "100::1", "3fff::1",
	}
	for _, s := range denied {
		assert.Error(t, p.checkAddr("h", netip.MustParseAddr(s), false), s)
	}
	allowed := []string{"8.8.8.8", "1.1.1.1", "104.192.136.1", "100.128.0.1", "100.63.255.255", "172.32.0.1",
		"11.0.0.1", "169.253.255.255", "2606:4700::1111", "2a00:1450:4001::200e", "64:ff9b::808:808", "::ffff:8.8.8.8"}
	for _, s := range allowed {
		assert.NoError(t, p.checkAddr("h", netip.MustParseAddr(s), false), s)
	}

	// A listed host name may resolve anywhere except to what is never a destination.
	for _, s := range []string{"169.254.169.254", "127.0.0.1", "10.0.0.1", "::1"} {
		assert.NoError(t, p.checkAddr("h", netip.MustParseAddr(s), true), s)
	}
	for _, s := range []string{"0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255", "::ffff:0.0.0.0"} {
		assert.Error(t, p.checkAddr("h", netip.MustParseAddr(s), true), s)
	}
	assert.Error(t, p.checkAddr("h", netip.MustParseAddr("fe80::1%eth0"), true), "zoned")

	wide := New(AllowList{Prefixes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}, Options{})
	for _, s := range []string{"0.0.0.0", "::", "224.0.0.1", "255.255.255.255"} {
		assert.Error(t, wide.checkAddr("h", netip.MustParseAddr(s), false), "never allowed, even by /0: %s", s)
	}
	assert.NoError(t, wide.checkAddr("h", netip.MustParseAddr("10.0.0.1"), false))
}

// The proxy from the environment is never used: it would resolve and connect where the dialer's
// check cannot see.
func TestClientUsesNoProxy(t *testing.T) {
	t.Parallel()
	p := New(AllowList{}, Options{})
	gt, ok := p.HTTPClient().Transport.(*guardedTransport)
	require.True(t, ok, "the client's transport is the guarded one")
	assert.Nil(t, gt.next.Proxy)
	assert.NotNil(t, gt.next.DialContext)
	assert.Nil(t, gt.next.DialTLSContext, "TLS connections are dialled through the checked DialContext")
}

// The socket-level Control hook refuses an address even when the resolve-and-check step was
// skipped, so a later change to dialContext cannot silently drop the check.
func TestControlHookRefusesUncheckedAddresses(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	ap := netip.MustParseAddrPort(ln.Addr().String())
	p := New(AllowList{}, Options{})
	_, err = p.dialChecked(context.Background(), "tcp", "evil.test", false, []netip.Addr{ap.Addr()}, ap.Port())
	assert.ErrorIs(t, err, ErrDenied)
	conn, err := p.dialChecked(context.Background(), "tcp", "listed.test", true, []netip.Addr{ap.Addr()}, ap.Port())
	require.NoError(t, err, "a listed host name may reach loopback")
	defer func() { _ = conn.Close() }()
	// Connections are accepted in arrival order: had the refused dial connected, its connection
	// would be the first one.
	first := <-accepted
	defer func() { _ = first.Close() }()
	assert.Equal(t, conn.LocalAddr().String(), first.RemoteAddr().String(), "the refused dial reached the listener")
}
