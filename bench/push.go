package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// rateLimitedPush measures finding push under Jira's rate limit: N findings reach the API at once
// while the simulator lets through `rate` issue creates per second (a token bucket of `burst`) and
// answers 429 with Retry-After beyond that. The whole system runs: API, Temporal, worker, the
// connection's workflow draining its finding queue.
type rateLimitedPush struct {
	findings int
	rate     float64
	burst    int
	posters  int
}

func newRateLimitedPush() *rateLimitedPush {
	return &rateLimitedPush{findings: 500, rate: 10, burst: 10, posters: 8}
}

func (*rateLimitedPush) Name() string  { return "rate-limited-push" }
func (*rateLimitedPush) Title() string { return "Rate-limited push" }

func (p *rateLimitedPush) Flags(fs *flag.FlagSet) {
	fs.IntVar(&p.findings, "rate-limited-push.findings", p.findings, "findings posted (each must become exactly one Jira issue)")
	fs.Float64Var(&p.rate, "rate-limited-push.rate", p.rate, "issue creates per second the simulator allows (token-bucket refill rate)")
	fs.IntVar(&p.burst, "rate-limited-push.burst", p.burst,
		"token-bucket size of the create limit (full when the findings arrive); the ideal time is (findings − burst) / rate")
	fs.IntVar(&p.posters, "rate-limited-push.posters", p.posters, "concurrent clients posting the findings to the API")
}

func (p *rateLimitedPush) Quick() { p.findings = 30 }

// pushCreateRoute is Jira Cloud's create-issue endpoint (the connection is a Cloud API-token one).
const pushCreateRoute = "POST /rest/api/3/issue"

func (p *rateLimitedPush) Run(ctx context.Context, b *Bench, r *Result) error {
	if p.findings < 1 || p.rate <= 0 || p.burst < 0 || p.posters < 1 {
		return errors.New("rate-limited-push: findings and posters must be at least 1, rate positive, burst not negative")
	}
	ideal := float64(max(p.findings-p.burst, 0)) / p.rate
	r.Parameters["findings"] = p.findings
	r.Parameters["rate_per_second"] = p.rate
	r.Parameters["burst"] = p.burst
	r.Parameters["posters"] = p.posters

	st, conn, err := StartFindingSyncStack(ctx, b, StackOptions{
		// The request log must hold every request of the run to count the 429s.
		Sim:  jirasim.Options{RequestLogSize: 1 << 16},
		Seed: jirasim.SeedSpec{Projects: 3, Issues: 300, SecurityShare: 0.1, ResolvedRecentShare: 0.3}})
	if err != nil {
		return err
	}
	defer st.Close()
	var org struct {
		ID uuid.UUID `json:"id"`
	}
	if err := st.Call(ctx, "GET", "/v1/orgs/me", nil, &org); err != nil {
		return err
	}
	connID, err := uuid.Parse(conn.ID)
	if err != nil {
		return fmt.Errorf("connection id %q: %w", conn.ID, err)
	}
	// Start from a settled connection: first sync done, finding sync loaded, nothing queued, so
	// the clock measures the push alone.
	if _, err := pushWaitIdle(ctx, st, connID, 90*time.Second, true); err != nil {
		return fmt.Errorf("connection never settled before the push: %w", err)
	}
	sec, ok := st.Sim.GetProject("SEC")
	if !ok {
		return errors.New("simulator has no SEC project")
	}
	base := sec.IssueCount

	// The limit applies from now on, with a full bucket.
	if err := st.Sim.SetFault(pushCreateRoute, jirasim.Fault{RateLimit: &jirasim.RateLimit{Rate: p.rate, Burst: p.burst}}); err != nil {
		return err
	}
	st.Sim.ResetRequests()
	b.Log.Info("rate-limited-push: posting findings", "findings", p.findings, "rate", p.rate, "burst", p.burst)

	start := time.Now()
	ids, posted, err := p.post(ctx, st)
	if err != nil {
		return err
	}
	markers := make(map[string]uuid.UUID, len(ids))
	for _, id := range ids {
		markers[findings.IssueMarker(findings.Scope{OrgID: org.ID, ConnectionID: connID}, id)] = id
	}

	// Generous: three times the ideal plus a minute, so a slow but working push is measured, not
	// declared lost.
	deadline := start.Add(time.Duration((3*ideal + 60) * float64(time.Second)))
	var scan pushScan
	lastLog := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		sec, _ := st.Sim.GetProject("SEC")
		if sec.IssueCount-base >= p.findings {
			scan = pushScanIssues(st.Sim, base, markers)
			if scan.withIssue == p.findings {
				break
			}
		}
		if time.Now().After(deadline) {
			scan = pushScanIssues(st.Sim, base, markers)
			break
		}
		if time.Since(lastLog) > 10*time.Second {
			b.Log.Info("rate-limited-push: progress", "issues", sec.IssueCount-base, "of", p.findings,
				"seconds", fmt.Sprintf("%.0f", time.Since(start).Seconds()))
			lastLog = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	complete := scan.withIssue == p.findings
	// Completion is when the last finding's first issue came into being (the simulator's creation
	// timestamp), not when the poll noticed it.
	completion := scan.lastFirst.Sub(start)
	if !complete {
		completion = time.Since(start)
	}

	// Let everything in flight finish before counting duplicates: a create retried late would
	// add its issue after the last finding got its first.
	settled, err := pushWaitIdle(ctx, st, connID, 60*time.Second, false)
	if err != nil && ctx.Err() != nil {
		return err
	}
	final := pushScanIssues(st.Sim, base, markers)

	// Creates from the request log (oldest first): 429s, successes, and how long the connector
	// paused after each 429 before its next successful create.
	var limited, creates, created int
	var pauses []time.Duration
	var pending *time.Time
	reqs := st.Sim.Requests()
	for _, rq := range reqs {
		if rq.Operation != jirasim.OpIssueCreate {
			continue
		}
		creates++
		switch rq.Status {
		case http.StatusTooManyRequests:
			limited++
			if pending == nil {
				t := rq.Time
				pending = &t
			}
		case http.StatusCreated:
			created++
			if pending != nil {
				pauses = append(pauses, rq.Time.Sub(*pending))
				pending = nil
			}
		}
	}

	secs := completion.Seconds()
	r.Add("all findings accepted by the API", posted.Seconds(), "s")
	r.Add("completion time", secs, "s")
	r.Add("ideal time (findings − burst) / rate", ideal, "s")
	if ideal > 0 {
		r.AtMost("completion / ideal", secs/ideal, "x", 1.2)
	} else {
		r.Note("The burst covers every finding, so the ideal time is 0 and no ratio is computed.")
	}
	r.Add("effective create rate", float64(scan.withIssue)/math.Max(secs, 1e-9), "issues/s")
	r.AtMost("duplicate issues", float64(final.duplicates), "issues", 0)
	r.AtMost("lost findings", float64(p.findings-final.withIssue), "findings", 0)
	r.Add("429 answers to creates", float64(limited), "answers")
	r.Add("create requests", float64(creates), "requests")
	if len(pauses) > 0 {
		var sum time.Duration
		for _, d := range pauses {
			sum += d
		}
		r.Add("mean pause after a 429", (sum / time.Duration(len(pauses))).Seconds(), "s")
	}

	r.Note("Stack: API, worker and Temporal in-process, one Cloud API-token connection with finding sync into SEC (default rule: severity ≥ high, status open). The simulator's fault on %q is a token bucket of %d refilled at %g/s, full when the findings arrive; beyond it Jira answers 429 with Retry-After: %d s and the documented rate-limit headers.", pushCreateRoute, p.burst, p.rate, int(math.Ceil(1/p.rate)))
	r.Note("%d high/open findings are POSTed to /v1/findings by %d concurrent clients. The clock starts at the first POST; completion is the creation time (simulator clock) of the last finding's first issue. Ideal = (findings − burst) / rate = %.1f s: no client can create more than burst + rate·t issues in t seconds.", p.findings, p.posters, ideal)
	r.Note("Issues are matched to findings by the issue marker label (findings.IssueMarker of org, connection and finding). Duplicates = issues beyond one per finding plus marked issues of no posted finding, counted after the connection's queue settled; lost = findings without an issue when counted (deadline 3×ideal + 60 s).")
	r.Note("429s and create requests are counted from the simulator's request log (%d creates recorded; each 429 is a create the connector retried after Retry-After).", creates)
	r.Note("Mean pause after a 429 = time from a 429 to the next successful create (the simulator's request times), against Retry-After: %d s. The bucket is full again after burst/rate = %.1f s; pause beyond that is create capacity lost for good.", int(math.Ceil(1/p.rate)), float64(p.burst)/p.rate)
	if !complete {
		r.Note("Not every finding had an issue by the deadline: completion time is the deadline, a lower bound.")
	}
	if !settled {
		r.Note("The connection's finding queue had not settled 60 s after completion; duplicates were counted anyway.")
	}
	if len(reqs) >= 1<<16 {
		r.Note("The simulator's request log overflowed: the 429 count is a lower bound.")
	}
	if created != final.total {
		r.Note("The simulator answered %d creates with 201 but holds %d new SEC issues.", created, final.total)
	}
	b.Log.Info("rate-limited-push: done", "completion_s", fmt.Sprintf("%.1f", secs), "ideal_s", fmt.Sprintf("%.1f", ideal),
		"duplicates", final.duplicates, "lost", p.findings-final.withIssue, "429s", limited)
	return nil
}

// post sends the findings to the API from p.posters goroutines and returns their ids and the
// time until the last one was accepted.
func (p *rateLimitedPush) post(ctx context.Context, st *Stack) ([]uuid.UUID, time.Duration, error) {
	start := time.Now()
	ids := make([]uuid.UUID, p.findings)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, p.posters)
	run := time.Now().UnixNano()
	for range p.posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= p.findings || ctx.Err() != nil {
					return
				}
				var out struct {
					ID uuid.UUID `json:"id"`
				}
				err := st.Call(ctx, "POST", "/v1/findings", map[string]any{
					"external_id": fmt.Sprintf("bench-push-%d/%d", run, i), "title": fmt.Sprintf("Benchmark finding %d", i),
					"severity": "high", "status": "open", "probe_id": "probe.bench", "scan_id": "bench-push",
				}, &out)
				if err != nil {
					errs <- fmt.Errorf("post finding %d: %w", i, err)
					return
				}
				ids[i] = out.ID
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, 0, err
	}
	return ids, time.Since(start), nil
}

// pushScan is what the simulator holds for the posted findings.
type pushScan struct {
	total      int       // new SEC issues
	withIssue  int       // findings with at least one issue
	duplicates int       // issues beyond one per finding, plus marked issues of no posted finding
	lastFirst  time.Time // latest of the findings' first-issue creation times
}

// pushScanIssues reads the SEC issues created after the first base ones and groups them by
// marker label.
func pushScanIssues(sim *jirasim.Server, base int, markers map[string]uuid.UUID) pushScan {
	sec, _ := sim.GetProject("SEC")
	first := map[uuid.UUID]time.Time{}
	var out pushScan
	for n := base + 1; n <= sec.IssueCount; n++ {
		is, ok := sim.Issue(fmt.Sprintf("SEC-%d", n))
		if !ok {
			continue
		}
		out.total++
		var id uuid.UUID
		known := false
		for _, l := range is.Labels {
			if findings.IsIssueMarker(l) {
				id, known = markers[l]
				break
			}
		}
		if !known {
			out.duplicates++ // an issue of no posted finding: nothing else creates issues here
			continue
		}
		if t, seen := first[id]; seen {
			out.duplicates++
			if is.Created.Before(t) {
				first[id] = is.Created
			}
			continue
		}
		first[id] = is.Created
	}
	out.withIssue = len(first)
	for _, t := range first {
		if t.After(out.lastFirst) {
			out.lastFirst = t
		}
	}
	return out
}

// pushWaitIdle waits until the connection's workflow is active with finding sync loaded and has
// no sync or finding work running or queued. It reports whether that happened before timeout;
// with must set, a timeout is an error.
func pushWaitIdle(ctx context.Context, st *Stack, connID uuid.UUID, timeout time.Duration, must bool) (bool, error) {
	deadline := time.Now().Add(timeout)
	var last workflows.ConnectionState
	for {
		v, err := st.TC.QueryWorkflow(ctx, workflows.WorkflowID(connID), "", workflows.QueryState)
		if err == nil {
			// A fresh value each time: omitted (omitempty) fields must not keep an earlier answer.
			var cur workflows.ConnectionState
			if err = v.Get(&cur); err == nil {
				last = cur
			}
		}
		if err == nil && last.Status == workflows.StatusActive && last.FindingSync && !last.SyncInProgress && last.PendingSyncSeq == 0 &&
			last.FindingOpInProgress == "" && !last.FindingQueuePending && last.FindingQueueNextDue == nil &&
			!last.WebhookRegisterPending && last.PendingInboundChanges == 0 {
			return true, nil
		}
		if time.Now().After(deadline) {
			if must {
				return false, fmt.Errorf("after %s: state %+v (last query error: %v)", timeout, last, err)
			}
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
