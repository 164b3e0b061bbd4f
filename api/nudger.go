package api

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/workflowclient"
)

// Nudger bounds.
const (
	// nudgeTimeout bounds one inbox-nudge signal. A nudge that times out is only late: the
	// workflow also checks its inbox with every reconciliation.
	nudgeTimeout = 10 * time.Second
	// maxConcurrentNudges bounds the signals in flight across all connections, so a burst for many
	// connections cannot open an unbounded number of Temporal calls. Connections waiting for a slot
	// keep coalescing their deliveries meanwhile.
	maxConcurrentNudges = 32
)

// nudger rings a connection workflow's doorbell after the webhook bridge stored a delivery in the
// connection's inbox: it sends the inbox-nudge signal asynchronously, with at most one signal in
// flight per connection. Deliveries that arrive while a connection's signal is in flight only mark
// it dirty, which makes exactly one more signal follow when the one in flight completes — so
// however many deliveries arrive, the workflow gets a bounded number of signals (and tasks), and
// every delivery is followed by a signal sent after it was stored.
//
// Nudges are best effort: a failure is logged (ids only) and not retried, since the delivery is
// durable and the workflow checks its inbox with every reconciliation. The nudger holds an entry
// only for a connection whose signal is in flight or waiting for a slot, so its memory is bounded
// by the connections nudged at the same time, not by the deliveries or the connections ever seen.
//
// One nudger belongs to one Server; close cancels the signals in flight and waits for them.
type nudger struct {
	// signal sends the inbox-nudge signal to the connection's workflow.
	signal func(ctx context.Context, connID uuid.UUID) error
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan struct{}

	mu sync.Mutex
	// dirty holds the connections with a nudge in flight (or waiting for a slot); true asks for
	// one more signal when it completes.
	dirty  map[uuid.UUID]bool
	closed bool
	idle   *sync.Cond // broadcast when dirty becomes empty
	wg     sync.WaitGroup
}

func newNudger(signal func(ctx context.Context, connID uuid.UUID) error, log *slog.Logger) *nudger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &nudger{signal: signal, log: log, ctx: ctx, cancel: cancel,
		slots: make(chan struct{}, maxConcurrentNudges), dirty: map[uuid.UUID]bool{}}
	n.idle = sync.NewCond(&n.mu)
	return n
}

// nudge asks for the connection's workflow to be signalled. It never blocks on Temporal.
func (n *nudger) nudge(connID uuid.UUID) {
	if n == nil || n.signal == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	if _, inFlight := n.dirty[connID]; inFlight {
		n.dirty[connID] = true
		return
	}
	n.dirty[connID] = false
	n.wg.Add(1)
	go n.run(connID)
}

// run signals the connection until no delivery arrived during the last signal, then forgets it.
func (n *nudger) run(connID uuid.UUID) {
	defer n.wg.Done()
	for {
		n.send(connID)
		n.mu.Lock()
		if n.dirty[connID] && n.ctx.Err() == nil {
			n.dirty[connID] = false
			n.mu.Unlock()
			continue
		}
		delete(n.dirty, connID)
		if len(n.dirty) == 0 {
			n.idle.Broadcast()
		}
		n.mu.Unlock()
		return
	}
}

func (n *nudger) send(connID uuid.UUID) {
	select {
	case n.slots <- struct{}{}:
	case <-n.ctx.Done():
		return
	}
	defer func() { <-n.slots }()
	if n.ctx.Err() != nil {
		return // closed while waiting for the slot
	}
	ctx, cancel := context.WithTimeout(n.ctx, nudgeTimeout)
	defer cancel()
	err := n.signal(ctx, connID)
	switch {
	case err == nil:
	case n.ctx.Err() != nil:
		// Shutting down: the delivery is stored and the workflow will find it.
	case errors.Is(err, workflowclient.ErrNoWorkflow):
		n.log.Warn("webhook inbox nudge: connection workflow is not running; the delivery is stored and applied when it runs",
			slog.String("connection_id", connID.String()))
	default:
		n.log.Warn("webhook inbox nudge failed; the workflow applies the delivery with its next inbox check",
			slog.String("connection_id", connID.String()), slog.String("error", err.Error()))
	}
}

// waitIdle returns once no nudge is in flight (tests use it to attribute signals to requests).
func (n *nudger) waitIdle() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for len(n.dirty) > 0 {
		n.idle.Wait()
	}
}

// close cancels the nudges in flight, refuses new ones, and waits until every nudge goroutine has
// returned.
func (n *nudger) close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
}
