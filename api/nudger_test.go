package api

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"
)

// gate is a signal function whose calls block until released (or cancelled); it records every
// call and the most calls in flight at once, per connection and in total.
type gate struct {
	release chan struct{}
	started chan uuid.UUID

	mu                  sync.Mutex
	calls               map[uuid.UUID]int
	inFlight            map[uuid.UUID]int
	maxPerConn, maxAll  int
	total, totalFlights int
}

func newGate() *gate {
	return &gate{release: make(chan struct{}), started: make(chan uuid.UUID, 1000),
		calls: map[uuid.UUID]int{}, inFlight: map[uuid.UUID]int{}}
}

func (g *gate) signal(ctx context.Context, connID uuid.UUID) error {
	g.mu.Lock()
	g.calls[connID]++
	g.total++
	g.inFlight[connID]++
	g.totalFlights++
	g.maxPerConn = max(g.maxPerConn, g.inFlight[connID])
	g.maxAll = max(g.maxAll, g.totalFlights)
	g.mu.Unlock()
	g.started <- connID
	defer func() {
		g.mu.Lock()
		g.inFlight[connID]--
		g.totalFlights--
		g.mu.Unlock()
	}()
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestNudgerCoalescesPerConnection(t *testing.T) {
	g := newGate()
	n := newNudger(g.signal, nil)
	defer n.close()
	a, b := uuid.New(), uuid.New()
	n.nudge(a)
	<-g.started
	for range 50 {
		n.nudge(a) // while a's signal is in flight: coalesced into one more
	}
	n.nudge(b) // another connection is not held back by a
	if got := <-g.started; got != b {
		t.Fatalf("second signal for %v, want %v", got, b)
	}
	close(g.release)
	n.waitIdle()
	if g.calls[a] != 2 || g.calls[b] != 1 || g.maxPerConn != 1 {
		t.Errorf("calls a=%d b=%d, max in flight per connection %d; want 2, 1, 1", g.calls[a], g.calls[b], g.maxPerConn)
	}
	// Idle connections are forgotten: memory is bounded by the connections nudged at once.
	n.mu.Lock()
	left := len(n.dirty)
	n.mu.Unlock()
	if left != 0 {
		t.Errorf("%d entries left after all nudges completed", left)
	}
	// A nudge after the last one completed is sent again.
	n.nudge(a)
	n.waitIdle()
	if g.calls[a] != 3 {
		t.Errorf("calls a=%d, want 3", g.calls[a])
	}
}

func TestNudgerBoundsSignalsAndStopsOnClose(t *testing.T) {
	g := newGate()
	n := newNudger(g.signal, nil)
	const conns = 3 * maxConcurrentNudges
	for range conns {
		n.nudge(uuid.New())
	}
	for range maxConcurrentNudges {
		<-g.started
	}
	g.mu.Lock()
	total := g.total
	g.mu.Unlock()
	if total != maxConcurrentNudges {
		t.Errorf("%d signals started while %d slots are taken", total, maxConcurrentNudges)
	}
	n.close() // cancels the signals in flight; the waiting ones give up
	if g.maxAll > maxConcurrentNudges {
		t.Errorf("%d signals in flight at once, bound %d", g.maxAll, maxConcurrentNudges)
	}
	if len(n.dirty) != 0 {
		t.Errorf("%d entries left after close", len(n.dirty))
	}
	n.nudge(uuid.New()) // refused after close
	if g.total != total {
		t.Errorf("signals after close: %d", g.total-total)
	}
	n.close() // idempotent
}
