package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

// inboundLatency is scenario 5, in two parts on one stack.
//
// Part A (Jira → finding latency): findings are created and linked to issues first, then a person
// moves the issues in the simulator (To Do → In Progress, which maps to triaged) at a steady,
// open-loop rate. The simulator delivers its signed admin webhook to the bridge as Jira would;
// the latency of a transition is the time until the finding's status is triaged in Postgres, seen
// by polling the findings table (there is no LISTEN/NOTIFY in the product) with one indexed query
// for the findings still pending.
//
// Part B (webhook ingress): signed jira:issue_updated deliveries are posted straight to the
// bridge URL at increasing offered rates, with a share of re-sent identifiers (Jira delivers at
// least once). A step passes when every delivery answered 2xx, the p99 answer time was under
// 100 ms and the sender achieved the rate; the figure is the highest passing rate before the
// first failing step.
type inboundLatency struct {
	findings     int
	createRate   float64
	rate         float64
	poll         time.Duration
	grace        time.Duration
	steps        string
	stepDuration time.Duration
	duplicates   float64
}

func newInboundLatency() *inboundLatency {
	return &inboundLatency{findings: 600, createRate: 20, rate: 20, poll: 10 * time.Millisecond, grace: 30 * time.Second,
		steps: "100,200,300,400,500,600,800,1000,1200,1600", stepDuration: 3 * time.Second, duplicates: 0.2}
}

func (*inboundLatency) Name() string { return "inbound-latency" }
func (*inboundLatency) Title() string {
	return "Jira → finding latency (p99 ≤ 1 s at 20 transitions/s) and webhook ingress (≥ 500/s with p99 < 100 ms)"
}

func (in *inboundLatency) Flags(fs *flag.FlagSet) {
	fs.IntVar(&in.findings, "inbound-latency.findings", in.findings, "findings created and linked before the transitions (one transition each)")
	fs.Float64Var(&in.createRate, "inbound-latency.create-rate", in.createRate, "findings posted per second while setting up")
	fs.Float64Var(&in.rate, "inbound-latency.rate", in.rate, "issue transitions per second in the simulator (open loop)")
	fs.DurationVar(&in.poll, "inbound-latency.poll", in.poll, "how often Postgres is polled for changed findings")
	fs.DurationVar(&in.grace, "inbound-latency.grace", in.grace,
		"how long to wait for the last findings after the transitions; a finding unchanged by then is lost")
	fs.StringVar(&in.steps, "inbound-latency.steps", in.steps, "comma-separated offered webhook delivery rates (per second), tried in order")
	fs.DurationVar(&in.stepDuration, "inbound-latency.step-duration", in.stepDuration, "how long each ingress rate is offered")
	fs.Float64Var(&in.duplicates, "inbound-latency.duplicates", in.duplicates, "share of ingress deliveries that re-send an earlier delivery's identifier")
}

func (in *inboundLatency) Quick() {
	in.findings, in.steps, in.stepDuration = 20, "100,400", time.Second
}

// ingressP99Limit is the answer time under which an ingress step passes.
const ingressP99Limit = 100 * time.Millisecond

// inboundTarget is a finding linked to an issue.
type inboundTarget struct {
	FindingID, IssueKey, IssueID string
}

func (in *inboundLatency) Run(ctx context.Context, b *Bench, r *Result) error {
	steps, err := parseIngressSteps(in.steps)
	if err != nil {
		return err
	}
	if in.findings < 1 || in.createRate <= 0 || in.rate <= 0 || in.poll <= 0 || in.stepDuration <= 0 || in.duplicates < 0 || in.duplicates >= 1 {
		return errors.New("inbound-latency: findings, rates, poll and step duration must be positive and duplicates in [0, 1)")
	}
	r.Parameters["findings"] = in.findings
	r.Parameters["create_rate_per_s"] = in.createRate
	r.Parameters["transition_rate_per_s"] = in.rate
	r.Parameters["db_poll_ms"] = ms(in.poll)
	r.Parameters["grace_s"] = in.grace.Seconds()
	r.Parameters["ingress_steps_per_s"] = in.steps
	r.Parameters["ingress_step_s"] = in.stepDuration.Seconds()
	r.Parameters["ingress_duplicate_share"] = in.duplicates
	r.Parameters["seed_issues"] = findingLatencySeed.Issues

	s, conn, err := StartFindingSyncStack(ctx, b, StackOptions{Seed: findingLatencySeed})
	if err != nil {
		return err
	}
	defer s.Close()
	pg, err := pgx.Connect(ctx, s.DB.OwnerURL)
	if err != nil {
		return fmt.Errorf("connect to the bench database as owner: %w", err)
	}
	defer pg.Close(context.Background())

	r.Note("machine load average (1/5/15 min) at the start: %s", procLoadAvg())
	defer func() { r.Note("machine load average (1/5/15 min) at the end: %s", procLoadAvg()) }()
	targets, err := in.setUp(ctx, b, s, pg, conn)
	if err != nil {
		return err
	}
	if err := in.transitions(ctx, b, s, pg, conn.ID, targets, r); err != nil {
		return err
	}
	return in.ingress(ctx, b, s, pg, conn, targets, steps, r)
}

// setUp creates the findings, waits until each is linked to an issue and the outbound queue is
// empty, and lets the issue_created deliveries settle.
func (in *inboundLatency) setUp(ctx context.Context, b *Bench, s *Stack, pg *pgx.Conn, conn Connection) ([]inboundTarget, error) {
	b.Log.Info("creating findings", "scenario", in.Name(), "findings", in.findings, "rate", in.createRate)
	w := newSimIssueWatcher(s.Sim, "SEC")
	posts := make([]benchFindingPost, in.findings)
	pace := runOpenLoop(ctx, in.createRate, in.findings, func(i int) {
		ext := fmt.Sprintf("inbound-%06d", i)
		posts[i] = postBenchFinding(ctx, s, ext, "Sensitive data in model output "+ext)
	})
	if pace.Calls < in.findings {
		return nil, ctx.Err()
	}
	ids := make([]string, 0, len(posts))
	for _, p := range posts {
		if p.Err != nil {
			return nil, fmt.Errorf("create findings: %w", p.Err)
		}
		ids = append(ids, p.ID)
	}
	if missing := w.waitFor(ctx, ids, max(in.grace, time.Minute)); len(missing) > 0 {
		return nil, fmt.Errorf("create findings: %d of %d findings got no issue", len(missing), len(ids))
	}
	deadline := time.Now().Add(max(in.grace, time.Minute))
	for {
		var linked, queued int
		err := pg.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM finding_issue_links WHERE connection_id = $1::text::uuid AND state = 'linked' AND issue_id IS NOT NULL),
			(SELECT count(*) FROM finding_sync_queue WHERE connection_id = $1::text::uuid)`, conn.ID).Scan(&linked, &queued)
		if err != nil {
			return nil, fmt.Errorf("count linked findings: %w", err)
		}
		if linked >= len(ids) && queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("create findings: %d of %d linked, %d still queued", linked, len(ids), queued)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := s.Sim.FlushWebhooks(fctx)
	cancel()
	if err != nil {
		return nil, err
	}
	targets := make([]inboundTarget, 0, len(ids))
	for _, id := range ids {
		iss := w.issuesOf(id)
		if len(iss) != 1 {
			return nil, fmt.Errorf("finding %s has %d issues", id, len(iss))
		}
		targets = append(targets, inboundTarget{FindingID: id, IssueKey: iss[0].Key, IssueID: iss[0].ID})
	}
	return targets, nil
}

// transitions is part A.
func (in *inboundLatency) transitions(ctx context.Context, b *Bench, s *Stack, pg *pgx.Conn, connID string, targets []inboundTarget, r *Result) error {
	b.Log.Info("transitioning issues", "scenario", in.Name(), "transitions", len(targets), "rate", in.rate)
	var mu sync.Mutex
	sent := map[string]time.Time{} // finding id → when its issue was transitioned
	seen := map[string]time.Time{} // finding id → when Postgres showed it triaged
	failed := map[string]error{}   // finding id → transition error
	sentKey := map[string]string{} // issue key → finding id
	// The poller is stopped through quitPoll, never by canceling its query: pgx closes a
	// connection whose query is canceled, and pg is used again in part B.
	quitPoll := make(chan struct{})
	pollDone := make(chan error, 1)
	var polls int
	var pollTime time.Duration
	go func() {
		t := time.NewTicker(in.poll)
		defer t.Stop()
		for {
			select {
			case <-quitPoll:
				pollDone <- nil
				return
			case <-ctx.Done():
				pollDone <- ctx.Err()
				return
			case <-t.C:
			}
			mu.Lock()
			pending := make([]string, 0, 64)
			for id := range sent {
				if _, ok := seen[id]; !ok {
					pending = append(pending, id)
				}
			}
			mu.Unlock()
			if len(pending) == 0 {
				continue
			}
			q0 := time.Now()
			rows, err := pg.Query(ctx, `SELECT id::text FROM findings WHERE id = ANY($1::text[]::uuid[]) AND status = 'triaged'`, pending)
			if err != nil {
				pollDone <- fmt.Errorf("poll findings: %w", err)
				return
			}
			changed, err := pgx.CollectRows(rows, pgx.RowTo[string])
			now := time.Now()
			if err != nil {
				pollDone <- fmt.Errorf("poll findings: %w", err)
				return
			}
			polls++
			pollTime += now.Sub(q0)
			mu.Lock()
			for _, id := range changed {
				seen[id] = now
			}
			mu.Unlock()
		}
	}()

	start := time.Now()
	pace := runOpenLoop(ctx, in.rate, len(targets), func(i int) {
		t := targets[i]
		mu.Lock()
		sent[t.FindingID] = time.Now()
		sentKey[t.IssueKey] = t.FindingID
		mu.Unlock()
		if err := s.Sim.TransitionAsHuman(t.IssueKey, "In Progress"); err != nil {
			mu.Lock()
			failed[t.FindingID] = err
			mu.Unlock()
		}
	})
	deadline := time.Now().Add(in.grace)
	for {
		mu.Lock()
		done := len(seen)+len(failed) >= pace.Calls
		mu.Unlock()
		if done || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(quitPoll)
	if err := <-pollDone; err != nil {
		return err
	}

	var lat Latencies
	mu.Lock()
	for id, t0 := range sent {
		if at, ok := seen[id]; ok {
			lat.Add(at.Sub(t0))
		}
	}
	unchanged := len(sent) - len(seen)
	mu.Unlock()
	r.Add("transitions", float64(pace.Calls), "transitions")
	r.Add("transition rate", pace.Rate(), "/s")
	r.Add("finding p50", ms(lat.Percentile(50)), "ms")
	r.AtMost("finding p99", ms(lat.Percentile(99)), "ms", 1000)
	r.Add("finding max", ms(lat.Percentile(100)), "ms")
	r.AtMost("unchanged findings", float64(unchanged), "findings", 0)
	meanPoll := time.Duration(0)
	if polls > 0 {
		meanPoll = pollTime / time.Duration(polls)
	}
	r.Note("part A: %d findings linked to issues first; then TransitionAsHuman(To Do → In Progress) on their issues, open loop at %.0f/s (sender at most %.1f ms behind schedule); latency = first poll that saw the finding 'triaged' in Postgres (read when the query returned) minus the time just before the transition",
		len(targets), in.rate, ms(pace.MaxLag))
	r.Note("part A resolution: one query (findings pending, by primary key) every %s, %.2f ms each on average, %d polls: the measured latency overstates the true commit time by at most the poll interval plus one query; no LISTEN/NOTIFY exists in the product to do better",
		in.poll, ms(meanPoll), polls)
	var firstErr error
	for _, err := range failed {
		firstErr = err
	}
	if firstErr != nil {
		r.Note("part A: %d transitions failed in the simulator (counted as unchanged), e.g. %v", len(failed), firstErr)
	}
	in.breakdown(s, start, sent, seen, sentKey, r)
	last := start
	for _, at := range seen {
		if at.After(last) {
			last = at
		}
	}
	if lane, err := readConnectionLane(ctx, s, connID, start, last); err != nil {
		r.Note("part A where the time goes: the workflow history could not be read: %v", err)
	} else {
		r.Note("part A %s", lane.describe(nil))
	}
	return nil
}

// breakdown splits part A's latency with the simulator's delivery log: how long the simulator
// took to start the webhook delivery, how long the bridge took to answer, and the rest (signal →
// workflow → apply activity → commit, plus the poll delay).
func (in *inboundLatency) breakdown(s *Stack, since time.Time, sent, seen map[string]time.Time, sentKey map[string]string, r *Result) {
	var dispatch, answer, rest Latencies
	attempts, failedAttempts := 0, 0
	for _, d := range s.Sim.Deliveries() {
		if d.Event != "jira:issue_updated" || d.Time.Before(since) {
			continue
		}
		attempts++
		if d.Status/100 != 2 {
			failedAttempts++
		}
		if d.Attempt != 1 || d.Duplicate {
			continue
		}
		key := ingressIssueKey(d.Body)
		id, ok := sentKey[key]
		if !ok {
			continue
		}
		t0 := sent[id]
		dispatch.Add(d.Time.Sub(t0))
		answer.Add(d.Duration)
		if at, ok := seen[id]; ok {
			rest.Add(at.Sub(d.Time.Add(d.Duration)))
		}
	}
	r.Note("part A breakdown (p50 / p99): transition → simulator starts the delivery %.1f / %.1f ms; bridge answers the delivery %.1f / %.1f ms; bridge answer → finding seen changed %.1f / %.1f ms (%d delivery attempts, %d not 2xx)",
		ms(dispatch.Percentile(50)), ms(dispatch.Percentile(99)), ms(answer.Percentile(50)), ms(answer.Percentile(99)),
		ms(rest.Percentile(50)), ms(rest.Percentile(99)), attempts, failedAttempts)
}

func ingressIssueKey(body []byte) string {
	var v struct {
		Issue struct {
			Key string `json:"key"`
		} `json:"issue"`
	}
	_ = json.Unmarshal(body, &v)
	return v.Issue.Key
}

// ingressDelivery is one unique delivery: identifier, body and signature, as Jira would send it.
type ingressDelivery struct {
	ident string
	body  []byte
	sig   string
}

// ingressSend is one request of a step: delivery u of the run, or a re-send of it.
type ingressSend struct {
	u   int
	dup bool
}

// ingressAnswer is what one request got.
type ingressAnswer struct {
	status int
	lat    time.Duration
	err    error
}

// ingress is part B.
func (in *inboundLatency) ingress(ctx context.Context, b *Bench, s *Stack, pg *pgx.Conn, conn Connection, targets []inboundTarget, steps []int, r *Result) error {
	templates, err := ingressTemplates(s.Sim.Deliveries())
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute}}
	defer client.CloseIdleConnections()
	rng := rand.New(rand.NewPCG(5, 5))
	var deliveries []ingressDelivery
	accepted := map[int]int{} // delivery → 202 answers
	best, bestP99 := 0, time.Duration(0)
	var total, total2xx, totalDup int
	stopped := false
	for si, rate := range steps {
		n := max(1, int(float64(rate)*in.stepDuration.Seconds()+0.5))
		// Build the step's deliveries before it starts so the sender only sends. Event times are
		// the planned send times; an issue recurs every len(targets)/rate seconds, so its reports
		// stay in order.
		plan := make([]ingressSend, n)
		buildAt := time.Now()
		for i := range plan {
			if prior := len(deliveries); prior > 0 && rng.Float64() < in.duplicates {
				plan[i] = ingressSend{u: prior - 1 - rng.IntN(min(prior, 50)), dup: true}
				continue
			}
			u := len(deliveries)
			t := targets[u%len(targets)]
			tmpl, ok := templates[t.IssueKey]
			if !ok {
				return fmt.Errorf("ingress: no recorded delivery of %s to build payloads from", t.IssueKey)
			}
			toDone := (u/len(targets))%2 == 0 // the issues are In Progress after part A
			ts := buildAt.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second))).UnixMilli()
			body, err := ingressBody(tmpl, toDone, ts, int64(900000+u))
			if err != nil {
				return err
			}
			deliveries = append(deliveries, ingressDelivery{ident: uuid.NewString(), body: body, sig: ingressSignature(conn.Webhook.SigningSecret, body)})
			plan[i] = ingressSend{u: u}
		}
		answers := make([]ingressAnswer, n)
		b.Log.Info("ingress step", "scenario", in.Name(), "rate", rate, "deliveries", n)
		sampler := startPGActivitySampler(ctx, pg)
		pace := runOpenLoop(ctx, float64(rate), n, func(i int) {
			answers[i] = sendIngress(ctx, client, conn.Webhook.URL, deliveries[plan[i].u])
		})
		pgAct := sampler.stop()
		var lat, latAccepted, latDuplicate Latencies
		var ok2xx, code202, code200, dups int
		other := map[string]int{}
		for i := range pace.Calls {
			a := answers[i]
			lat.Add(a.lat) // failed requests count at the time they took, too
			if plan[i].dup {
				dups++
			}
			switch {
			case a.err != nil:
				other["transport error"]++
			case a.status == http.StatusAccepted:
				code202++
				accepted[plan[i].u]++
				latAccepted.Add(a.lat)
			case a.status == http.StatusOK:
				code200++
				latDuplicate.Add(a.lat)
			default:
				other[strconv.Itoa(a.status)]++
			}
			if a.err == nil && a.status/100 == 2 {
				ok2xx++
			}
		}
		p50, p99 := lat.Percentile(50), lat.Percentile(99)
		total += pace.Calls
		total2xx += ok2xx
		totalDup += dups
		pass := ok2xx == pace.Calls && pace.Calls == n && p99 < ingressP99Limit && pace.Rate() >= 0.95*float64(rate)
		verdict := "pass"
		if !pass {
			verdict = "FAIL"
		}
		r.Add(fmt.Sprintf("ingress p99 @ %d/s", rate), ms(p99), "ms")
		r.Note("part B step %d/s: achieved %.1f/s, sent %d (%d re-sent identifiers), 2xx %d (202 accepted %d, 200 duplicate %d), other %s; p50 %.1f ms, p99 %.1f ms, max %.1f ms → %s; p50/p99 of accepted (stored in the inbox) %.1f/%.1f ms, of duplicates %.1f/%.1f ms; Postgres sessions of the stack at most %d, %d of them idle in transaction at once",
			rate, pace.Rate(), pace.Calls, dups, ok2xx, code202, code200, ingressCounts(other), ms(p50), ms(p99), ms(lat.Percentile(100)), verdict,
			ms(latAccepted.Percentile(50)), ms(latAccepted.Percentile(99)), ms(latDuplicate.Percentile(50)), ms(latDuplicate.Percentile(99)),
			pgAct.maxSessions, pgAct.maxIdleInTx)
		if !pass {
			stopped = si < len(steps)-1
			break
		}
		best, bestP99 = rate, p99
		// Let the connection workflow work off the step's deliveries before the next rate.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	doubles := 0
	for _, c := range accepted {
		doubles += max(0, c-1)
	}
	idents := make([]string, len(deliveries))
	for i, d := range deliveries {
		idents[i] = d.ident
	}
	var stored int
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE connection_id = $1::text::uuid AND delivery_id = ANY($2::text[])`,
		conn.ID, idents).Scan(&stored); err != nil {
		return fmt.Errorf("count stored deliveries: %w", err)
	}
	r.AtLeast("ingress max rate", float64(best), "/s", 500)
	if best > 0 {
		r.Add("ingress p99 at max rate", ms(bestP99), "ms")
	}
	r.Add("ingress deliveries", float64(total), "requests")
	r.Add("ingress 2xx", float64(total2xx), "requests")
	r.AtMost("ingress duplicates accepted twice", float64(doubles), "deliveries", 0)
	r.Note("part B: signed (X-Hub-Signature sha256 HMAC with the connection's signing secret) jira:issue_updated deliveries with X-Atlassian-Webhook-Identifier, posted to the bridge URL open loop, one goroutine each; bodies are the simulator's own recorded delivery of each linked issue with a new status change (In Progress ⇄ Done, alternating per pass over the %d issues) and event time; %.0f%% of requests re-send one of the 50 latest identifiers",
		len(targets), in.duplicates*100)
	r.Note("part B: 'valid' = the bridge's checks pass (known connection, URL secret, HMAC, parseable supported event); the bridge does not check that the issue is linked — an unknown issue is accepted and ignored by the apply activity — so every delivery names a linked issue to exercise the full path (inbox row and coalesced nudge signal, then the inbox apply activity)")
	r.Note("part B: a step passes when every request answered 2xx, p99 < %s and the sender achieved ≥ 95%% of the rate; max rate = highest passing step before the first failing one%s; answer time = request sent → body read",
		ingressP99Limit, map[bool]string{true: " (later steps not run)", false: ""}[stopped])
	r.Note("part B dedupe: %d unique identifiers sent (%d re-sends), %d stored in webhook_deliveries, %d answered 202 more than once", len(deliveries), totalDup, stored, doubles)
	return nil
}

// ingressCounts prints answer counts by kind, sorted ("none" when empty).
func ingressCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// pgActivity is what a pgActivitySampler saw.
type pgActivity struct {
	maxSessions, maxIdleInTx int
}

// pgActivitySampler samples pg_stat_activity of the bench database every 50 ms: how many sessions
// the stack has open and how many sit idle inside a transaction (waiting on something outside
// Postgres while holding a pool connection).
//
// Stopping never interrupts a query (pgx closes a connection whose query is canceled, and the
// connection is used again afterwards): the sampler finishes the query in flight and returns.
type pgActivitySampler struct {
	quit chan struct{}
	done chan pgActivity
}

func startPGActivitySampler(ctx context.Context, pg *pgx.Conn) *pgActivitySampler {
	p := &pgActivitySampler{quit: make(chan struct{}), done: make(chan pgActivity, 1)}
	go func() {
		var out pgActivity
		defer func() { p.done <- out }()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			var sessions, idleInTx int
			err := pg.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state = 'idle in transaction')
				FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&sessions, &idleInTx)
			if err != nil {
				return
			}
			out.maxSessions, out.maxIdleInTx = max(out.maxSessions, sessions), max(out.maxIdleInTx, idleInTx)
			select {
			case <-ctx.Done():
				return
			case <-p.quit:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *pgActivitySampler) stop() pgActivity {
	close(p.quit)
	return <-p.done
}

func parseIngressSteps(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("inbound-latency.steps: %q is not a positive rate", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// ingressTemplates returns the latest recorded delivery body of every issue, decoded.
func ingressTemplates(ds []jirasim.Delivery) (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	for _, d := range ds {
		var m map[string]any
		if err := json.Unmarshal(d.Body, &m); err != nil {
			return nil, fmt.Errorf("decode a recorded delivery: %w", err)
		}
		if key := ingressIssueKey(d.Body); key != "" {
			out[key] = m
		}
	}
	return out, nil
}

// ingressBody renders a jira:issue_updated delivery from an issue's recorded delivery: the issue
// is now Done (from In Progress) or In Progress (from Done), at ts.
func ingressBody(tmpl map[string]any, toDone bool, ts, changelogID int64) ([]byte, error) {
	issue, _ := tmpl["issue"].(map[string]any)
	fields, _ := issue["fields"].(map[string]any)
	if fields == nil {
		return nil, errors.New("ingress: recorded delivery has no issue fields")
	}
	inProgress := map[string]any{"id": jirasim.StatusInProgress, "name": "In Progress",
		"statusCategory": map[string]any{"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"}}
	done := map[string]any{"id": jirasim.StatusDone, "name": "Done",
		"statusCategory": map[string]any{"id": 3, "key": "done", "colorName": "green", "name": "Done"}}
	from, to := inProgress, done
	var resolution any
	if toDone {
		resolution = map[string]any{"id": jirasim.ResolutionDone, "name": "Done"}
	} else {
		from, to = done, inProgress
	}
	fields["status"], fields["resolution"] = to, resolution
	tmpl["timestamp"] = ts
	tmpl["webhookEvent"] = "jira:issue_updated"
	tmpl["issue_event_type_name"] = "issue_generic"
	tmpl["changelog"] = map[string]any{"id": strconv.FormatInt(changelogID, 10), "items": []any{map[string]any{
		"field": "status", "fieldtype": "jira", "fieldId": "status",
		"from": from["id"], "fromString": from["name"], "to": to["id"], "toString": to["name"]}}}
	return json.Marshal(tmpl)
}

// ingressSignature is X-Hub-Signature as Jira computes it for admin webhooks with a secret.
func ingressSignature(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func sendIngress(ctx context.Context, client *http.Client, url string, d ingressDelivery) ingressAnswer {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(d.body))
	if err != nil {
		return ingressAnswer{err: err}
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Atlassian Webhook HTTP Client (bench)")
	req.Header.Set("X-Atlassian-Webhook-Identifier", d.ident)
	req.Header.Set("X-Atlassian-Webhook-Flow", "Primary")
	req.Header.Set("X-Hub-Signature", d.sig)
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return ingressAnswer{err: err, lat: time.Since(t0)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return ingressAnswer{status: resp.StatusCode, lat: time.Since(t0), err: err}
}
