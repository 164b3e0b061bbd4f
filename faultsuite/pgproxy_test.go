package faultsuite

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// pgProxy is a TCP proxy between one jiraconnect process and Postgres. The machine's Postgres is
// shared with every other test package, so it is never restarted; instead the proxy makes it
// unreachable for the process behind it:
//
//   - cut closes every live connection at once (the process sees its sessions die mid-query,
//     as when Postgres restarts) and, until restore, refuses new ones by closing them as soon as
//     they are accepted;
//   - pause stalls every connection without closing it (bytes read are held, nothing is
//     forwarded), as a network partition does; resume forwards again. A cut while paused drops
//     the held bytes, so nothing a killed process had sent reaches Postgres later.
type pgProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  map[*proxyPair]struct{}
	down   bool
	paused chan struct{} // non-nil while paused; closed by resume
	closed bool
	wg     sync.WaitGroup
}

type proxyPair struct {
	client, server net.Conn
	done           chan struct{}
	once           sync.Once
}

func (p *proxyPair) close() {
	p.once.Do(func() {
		close(p.done)
		_ = p.client.Close()
		_ = p.server.Close()
	})
}

// newPGProxy starts a proxy; the stack closes it after stopping the processes behind it.
func newPGProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: target, conns: map[*proxyPair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p
}

// addr is the host:port the process connects to instead of Postgres.
func (p *pgProxy) addr() string { return p.ln.Addr().String() }

func (p *pgProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		refuse := p.down || p.closed
		p.mu.Unlock()
		if refuse {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *pgProxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = client.Close()
		return
	}
	pair := &proxyPair{client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.down || p.closed {
		p.mu.Unlock()
		pair.close()
		return
	}
	p.conns[pair] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(pair, server, client) }()
	go func() { defer wg.Done(); p.pipe(pair, client, server) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, pair)
	p.mu.Unlock()
}

// pipe copies src to dst, holding each chunk while the proxy is paused.
func (p *pgProxy) pipe(pair *proxyPair, dst io.Writer, src io.Reader) {
	defer pair.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.paused
			p.mu.Unlock()
			if gate != nil {
				select {
				case <-gate:
				case <-pair.done:
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut closes every live connection and refuses new ones until restore.
func (p *pgProxy) cut() {
	p.mu.Lock()
	p.down = true
	pairs := make([]*proxyPair, 0, len(p.conns))
	for c := range p.conns {
		pairs = append(pairs, c)
	}
	p.mu.Unlock()
	for _, c := range pairs {
		c.close()
	}
}

// restore accepts connections again.
func (p *pgProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// pause stalls all traffic without closing anything.
func (p *pgProxy) pause() {
	p.mu.Lock()
	if p.paused == nil {
		p.paused = make(chan struct{})
	}
	p.mu.Unlock()
}

// resume forwards the held and new traffic again.
func (p *pgProxy) resume() {
	p.mu.Lock()
	if p.paused != nil {
		close(p.paused)
		p.paused = nil
	}
	p.mu.Unlock()
}

func (p *pgProxy) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.resume()
	p.cut()
	p.wg.Wait()
}
