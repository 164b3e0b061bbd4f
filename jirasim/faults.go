package jirasim

import (
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// faultSet holds the runtime-configurable fault rules. Random decisions come from a seeded
// source so a scenario replays identically for the same request sequence.
type faultSet struct {
	mu      sync.Mutex
	entries []*faultEntry
	rng     *mrand.Rand
}

type faultEntry struct {
	route     string
	method    string   // upper-case; "" any
	segs      []string // path pattern segments
	f         Fault
	remaining int // for Times; -1 unlimited
	tokens    float64
	last      time.Time
}

func newFaultSet(seed uint64) *faultSet {
	return &faultSet{rng: mrand.New(mrand.NewPCG(seed, 0x6661756c74))}
}

// parseRoute splits "METHOD /path/pattern" (method optional or "*"). Path segments may use
// path.Match globs; a "**" segment matches any number of segments.
func parseRoute(route string) (method string, segs []string, err error) {
	route = strings.TrimSpace(route)
	m, p, ok := strings.Cut(route, " ")
	if !ok {
		m, p = "", route
	}
	p = strings.TrimSpace(p)
	m = strings.ToUpper(strings.TrimSpace(m))
	if m == "*" {
		m = ""
	}
	if !strings.HasPrefix(p, "/") {
		return "", nil, fmt.Errorf("fault route %q: the path must start with /", route)
	}
	segs = strings.Split(strings.Trim(p, "/"), "/")
	for _, sg := range segs {
		if sg == "**" {
			continue
		}
		if _, err := path.Match(sg, "x"); err != nil {
			return "", nil, fmt.Errorf("fault route %q: bad pattern segment %q: %w", route, sg, err)
		}
	}
	return m, segs, nil
}

func matchSegs(pat, segs []string) bool {
	if len(pat) == 0 {
		return len(segs) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(segs); i++ {
			if matchSegs(pat[1:], segs[i:]) {
				return true
			}
		}
		return false
	}
	if len(segs) == 0 {
		return false
	}
	if ok, _ := path.Match(pat[0], segs[0]); !ok {
		return false
	}
	return matchSegs(pat[1:], segs[1:])
}

func (e *faultEntry) matches(method string, paths []string) bool {
	if e.method != "" && e.method != method {
		return false
	}
	for _, p := range paths {
		if matchSegs(e.segs, strings.Split(strings.Trim(p, "/"), "/")) {
			return true
		}
	}
	return false
}

// SetFault installs (or replaces) the fault for a route pattern such as
// "POST /rest/api/3/issue", "GET /rest/api/*/issue/*", "* /rest/api/3/**". Patterns match the
// site path and the 3LO gateway path alike (the /ex/jira/{cloudid} prefix is ignored).
func (s *Sim) SetFault(route string, f Fault) error {
	m, segs, err := parseRoute(route)
	if err != nil {
		return err
	}
	if f.ErrorRate < 0 || f.ErrorRate > 1 {
		return fmt.Errorf("fault %q: errorRate %v must be within [0,1]", route, f.ErrorRate)
	}
	if f.RateLimit != nil && (f.RateLimit.Rate < 0 || f.RateLimit.Burst < 0) {
		return fmt.Errorf("fault %q: rate limit rate and burst must not be negative", route)
	}
	e := &faultEntry{route: route, method: m, segs: segs, f: f, remaining: -1, last: s.bucketTime(f.RateLimit)}
	if f.Times > 0 {
		e.remaining = f.Times
	}
	if f.RateLimit != nil {
		e.tokens = float64(f.RateLimit.Burst)
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	for i, old := range s.faults.entries {
		if old.route == route {
			s.faults.entries[i] = e
			return nil
		}
	}
	s.faults.entries = append(s.faults.entries, e)
	return nil
}

// ClearFault removes the fault installed for exactly this route string.
func (s *Sim) ClearFault(route string) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	for i, e := range s.faults.entries {
		if e.route == route {
			s.faults.entries = append(s.faults.entries[:i], s.faults.entries[i+1:]...)
			return
		}
	}
}

// ClearFaults removes every fault.
func (s *Sim) ClearFaults() {
	s.faults.mu.Lock()
	s.faults.entries = nil
	s.faults.mu.Unlock()
}

// Faults returns the installed faults by route (Times shows what is left).
func (s *Sim) Faults() map[string]Fault {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	out := make(map[string]Fault, len(s.faults.entries))
	for _, e := range s.faults.entries {
		f := e.f
		if e.remaining >= 0 {
			f.Times = e.remaining
		}
		out[e.route] = f
	}
	return out
}

// faultPlan is what the matching faults decided for one request.
type faultPlan struct {
	names      []string
	latency    time.Duration
	reset      bool
	status     int
	header     http.Header
	body       string
	truncate   bool
	malformed  bool
	commitDrop bool
}

func (p *faultPlan) name() string { return strings.Join(p.names, ",") }

// plan evaluates the fault rules for one request.
func (s *Sim) planFaults(method string, paths []string) faultPlan {
	var plan faultPlan
	now := s.Now()
	fs := s.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	kept := fs.entries[:0]
	for _, e := range fs.entries {
		if !e.matches(method, paths) {
			kept = append(kept, e)
			continue
		}
		f := e.f
		if f.Latency > 0 || f.Jitter > 0 {
			d := f.Latency
			if f.Jitter > 0 {
				d += time.Duration(fs.rng.Int64N(int64(f.Jitter) + 1))
			}
			plan.latency += d
			plan.names = append(plan.names, "latency")
		}
		if f.ResetConnection {
			plan.reset = true
			plan.names = append(plan.names, "reset")
		}
		if plan.status == 0 && f.RateLimit != nil {
			rl := f.RateLimit
			at := s.bucketTime(rl)
			elapsed := at.Sub(e.last).Seconds()
			if elapsed > 0 {
				e.tokens = math.Min(float64(rl.Burst), e.tokens+elapsed*rl.Rate)
			}
			e.last = at
			if e.tokens >= 1 {
				e.tokens--
			} else {
				plan.status = http.StatusTooManyRequests
				plan.header = rateLimitHeaders(rl, now)
				plan.body = `{"errorMessages":["Rate limit exceeded."],"errors":{}}`
				plan.names = append(plan.names, "ratelimit")
			}
		}
		if plan.status == 0 && f.Unavailable {
			ra := f.UnavailableRetryAfter
			if ra <= 0 {
				ra = 1
			}
			plan.status = http.StatusServiceUnavailable
			plan.header = http.Header{"Retry-After": {strconv.Itoa(ra)}}
			plan.body = `{"errorMessages":["Service Unavailable"],"errors":{}}`
			plan.names = append(plan.names, "unavailable")
		}
		if plan.status == 0 && f.ErrorRate > 0 && fs.rng.Float64() < f.ErrorRate {
			plan.status = f.ErrorStatus
			if plan.status == 0 {
				plan.status = http.StatusInternalServerError
			}
			plan.header = http.Header{}
			plan.body = `{"errorMessages":["Internal server error"],"errors":{}}`
			plan.names = append(plan.names, "error"+strconv.Itoa(plan.status))
		}
		if f.TruncateBody {
			plan.truncate = true
			plan.names = append(plan.names, "truncate")
		}
		if f.MalformedBody {
			plan.malformed = true
			plan.names = append(plan.names, "malformed")
		}
		if f.CommitThenDrop {
			plan.commitDrop = true
			plan.names = append(plan.names, "commitThenDrop")
		}
		if e.remaining > 0 {
			e.remaining--
		}
		if e.remaining != 0 {
			kept = append(kept, e)
		}
	}
	fs.entries = kept
	return plan
}

// bucketTime is the time a rate limit's token bucket refills by: the simulator's clock, or only
// its advances when the limit is on SimulatedTime.
func (s *Sim) bucketTime(rl *RateLimit) time.Time {
	if rl != nil && rl.SimulatedTime {
		return time.Unix(0, s.clockOffset.Load())
	}
	return s.Now()
}

// rateLimitHeaders builds the 429 headers documented for Jira Cloud (JIRA-NOTES.md §7.1).
func rateLimitHeaders(rl *RateLimit, now time.Time) http.Header {
	ra := rl.RetryAfter
	if ra <= 0 {
		ra = 1
		if rl.Rate > 0 {
			ra = int(math.Ceil(1 / rl.Rate))
		}
	}
	reason := rl.Reason
	if reason == "" {
		reason = "jira-burst-based"
	}
	h := http.Header{}
	reset := now.Add(time.Duration(ra) * time.Second).UTC().Format("2006-01-02T15:04Z")
	if rl.BetaHeaders {
		h.Set("Beta-Retry-After", strconv.Itoa(ra))
		h.Set("X-Beta-Ratelimit-Reason", reason)
		h.Set("X-Beta-Ratelimit-Reset", reset)
		return h
	}
	h.Set("Retry-After", strconv.Itoa(ra))
	h.Set("RateLimit-Reason", reason)
	h.Set("X-RateLimit-Limit", strconv.Itoa(rl.Burst))
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Reset", reset)
	return h
}
