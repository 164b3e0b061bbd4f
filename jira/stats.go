package jira

import (
	"maps"
	"sync"
)

// CallStats counts the HTTP calls made to Jira, per operation. One CallStats is typically created
// per activity run and passed in Config, so that an evidence sync can record how many Jira calls
// it made (and tests can prove that the number does not grow with the site's size).
//
// Every request attempt is counted, including the single retry after a 401 and token-endpoint
// calls ("oauth.refresh"), because each one costs rate-limit budget. The zero value is ready to use
// and safe for concurrent use.
type CallStats struct {
	mu   sync.Mutex
	byOp map[string]int
}

// Record counts one call of op. A nil *CallStats ignores the call, so recording never needs a
// nil check at the call site.
func (s *CallStats) Record(op string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byOp == nil {
		s.byOp = make(map[string]int)
	}
	s.byOp[op]++
}

// Total returns the number of calls recorded.
func (s *CallStats) Total() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.byOp {
		n += c
	}
	return n
}

// ByOp returns a copy of the per-operation counts.
func (s *CallStats) ByOp() map[string]int {
	if s == nil {
		return map[string]int{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.byOp))
	maps.Copy(out, s.byOp)
	return out
}
