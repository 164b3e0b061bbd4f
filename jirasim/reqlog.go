package jirasim

import (
	"maps"
	"sync"
)

// requestLog is a bounded ring buffer of requests plus unbounded per-operation counters (the
// counters are what tests assert call budgets with; the ring keeps memory flat under load).
type requestLog struct {
	mu     sync.Mutex
	buf    []RequestRecord
	next   int
	full   bool
	counts map[string]int
}

func newRequestLog(size int) *requestLog {
	return &requestLog{buf: make([]RequestRecord, size), counts: map[string]int{}}
}

func (l *requestLog) add(r RequestRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf[l.next] = r
	l.next++
	if l.next == len(l.buf) {
		l.next = 0
		l.full = true
	}
	l.counts[r.Operation]++
}

// Requests returns the recorded requests, oldest first (at most Options.RequestLogSize).
func (s *Sim) Requests() []RequestRecord {
	l := s.reqs
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.full {
		return append([]RequestRecord(nil), l.buf[:l.next]...)
	}
	out := make([]RequestRecord, 0, len(l.buf))
	out = append(out, l.buf[l.next:]...)
	return append(out, l.buf[:l.next]...)
}

// ResetRequests clears the request log and the operation counters.
func (s *Sim) ResetRequests() {
	l := s.reqs
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.buf)
	l.next, l.full = 0, false
	l.counts = map[string]int{}
}

// OperationCounts returns how many requests each operation received since the last reset
// (including rejected ones: a 401 still counts as a call).
func (s *Sim) OperationCounts() map[string]int {
	l := s.reqs
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.counts)
}

// OperationCount returns the counter of one operation (see the Op* constants).
func (s *Sim) OperationCount(op string) int {
	l := s.reqs
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[op]
}
