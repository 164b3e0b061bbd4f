package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// sdkActivitySlots is the Temporal Go SDK's default MaxConcurrentActivityExecutionSize. The
// production worker (worker.New) does not set it, so this is how many activities one worker runs
// at once; the bare baseline uses the same bound.
const sdkActivitySlots = 1000

// fleetSeed is the simulator data every fleet connection syncs: all connections point at the same
// site, so each sync makes the same calls (12 with the default configuration) over the same issues.
var fleetSeed = jirasim.SeedSpec{Projects: 10, Issues: 2000, SecurityShare: 0.1, ResolvedRecentShare: 0.3}

// fleetThroughput asks a whole fleet of connections to sync at once through the API (each sync
// goes API → Temporal update → ConnectionWorkflow → SyncEvidence activity on the in-process
// worker) and compares the rate with the same activity code called in a plain Go loop.
type fleetThroughput struct {
	connections    int
	create         int
	bareConcurrent int
	timeout        time.Duration
}

func newFleetThroughput() *fleetThroughput {
	return &fleetThroughput{connections: 1000, create: 32, bareConcurrent: sdkActivitySlots, timeout: 20 * time.Minute}
}

func (*fleetThroughput) Name() string { return "fleet" }
func (*fleetThroughput) Title() string {
	return "Fleet throughput: N connections asked to sync at once on the dev stack vs. a bare Go loop"
}

func (f *fleetThroughput) Flags(fs *flag.FlagSet) {
	fs.IntVar(&f.connections, "fleet.connections", f.connections, "connections created and then asked to sync at once")
	fs.IntVar(&f.create, "fleet.create-concurrency", f.create, "concurrent POST /v1/connections while setting the fleet up (not measured)")
	fs.IntVar(&f.bareConcurrent, "fleet.bare-concurrency", f.bareConcurrent,
		"concurrent SyncEvidence calls of the bare baseline (default: the SDK's default activity slots, which the worker uses)")
	fs.DurationVar(&f.timeout, "fleet.timeout", f.timeout, "how long each phase (initial syncs, sync-now burst, bare loop) may take")
}

func (f *fleetThroughput) Quick() { f.connections = 20 }

func (f *fleetThroughput) Run(ctx context.Context, b *Bench, r *Result) error {
	if f.connections < 1 || f.create < 1 || f.bareConcurrent < 1 {
		return errors.New("fleet: connections, create-concurrency and bare-concurrency must be positive")
	}
	n := f.connections
	r.Parameters["connections"] = n
	r.Parameters["create_concurrency"] = f.create
	r.Parameters["bare_concurrency"] = f.bareConcurrent
	r.Parameters["worker_activity_slots"] = sdkActivitySlots
	r.Parameters["seed_issues"] = fleetSeed.Issues

	s, err := StartStack(ctx, b, StackOptions{Temporal: true, API: true, Worker: true, Seed: fleetSeed})
	if err != nil {
		return err
	}
	defer s.Close()
	r.Parameters["database_max_conns"] = s.Core.Config.DatabaseMaxConns
	pool, err := pgxpool.New(ctx, s.DB.OwnerURL)
	if err != nil {
		return fmt.Errorf("open owner pool: %w", err)
	}
	defer pool.Close()

	// Set up: N connections, each of whose workflows runs its initial sync. Not measured.
	b.Log.Info("fleet: creating connections", "n", n)
	conns, created, err := createFleet(ctx, b, "fleet", s, n, f.create)
	if err != nil {
		return err
	}
	if _, err := waitFleetIdle(ctx, b, "fleet", pool, n, f.timeout); err != nil {
		return fmt.Errorf("initial syncs: %w", err)
	}
	b.Log.Info("fleet: all connections idle after their initial sync", "create_seconds", fmt.Sprintf("%.1f", created.Seconds()))
	refs, err := fleetRefs(ctx, pool)
	if err != nil {
		return err
	}

	// Temporal: every connection asked to sync at once.
	loadBefore := fleetLoadAvg()
	mem := startFleetRSSWatch("self")
	tRes, burstErr := f.syncNowBurst(ctx, b, s, pool, conns)
	peak, resetOK := mem.stop()
	loadAfter := fleetLoadAvg()
	if tRes.rate == 0 {
		if burstErr == nil {
			burstErr = errors.New("no sync-now sync finished")
		}
		return burstErr
	}
	r.AtLeast("temporal syncs/s", tRes.rate, "syncs/s", 20)
	r.Add("temporal p50 time to complete", ms(tRes.p50), "ms")
	r.Add("temporal p99 time to complete", ms(tRes.p99), "ms")
	r.Add("sync-now request p99", ms(tRes.reqP99), "ms")
	r.Add("sync-now requests failed", float64(tRes.requestFailures), "requests")
	r.Add("temporal syncs retried", float64(tRes.retried), "runs")
	r.Add("peak RSS (bench process)", peak, "MiB")
	r.Note("setup (not measured): %d connections created through POST /v1/connections (%d at a time, %.1fs), then waited until every workflow's initial sync run had finished and its state mirror set next_sync_at (idle on its daily timer)",
		n, f.create, created.Seconds())
	r.Note("temporal syncs/s = syncs finished / (last run's finished_at − first POST /v1/connections/{id}/sync sent); all N requests are sent at once (one goroutine each); a sync is complete when the connection's connector_runs row with trigger sync_now is finished, read from Postgres; finished_at is written by the activity just before its transaction commits")
	r.Note("temporal p50/p99 time to complete = finished_at − the moment this connection's sync-now request was sent (includes the HTTP request, the Temporal update that queues the sync, the activity's scheduling and queueing behind the other N−1); the SetConnectionState mirror the workflow runs after each sync is not in the latency but is in the load")
	r.Note("temporal outcomes: %s; temporal syncs retried = runs whose SyncEvidence needed more than one activity attempt (each retry waits SyncOptions' 10 s backoff)", tRes.outcomes)
	r.Note("sync-now requests failed = requests without a 202 (the bench's client waits up to %s; the API's server closes a response after its 60 s WriteTimeout); their syncs are still counted when they ran, as each run is found by connection and trigger sync_now%s",
		f.timeout, fleetFirst(tRes.firstFailure))
	if resetOK {
		r.Note("peak RSS = VmHWM of the bench process, reset (/proc/self/clear_refs) just before the sync-now burst and read after the last sync finished; it includes the in-process Temporal server (SQLite), the worker, the API and the Jira simulator, not only the worker")
	} else {
		r.Note("peak RSS = highest VmRSS sampled every 100 ms during the sync-now burst (VmHWM could not be reset); it includes the in-process Temporal server (SQLite), the worker, the API and the Jira simulator, not only the worker")
	}

	// Bare: the same activity, the same connections, no Temporal.
	bRes, err := f.bareLoop(ctx, b, s, refs)
	if err != nil {
		return err
	}
	r.Add("bare syncs/s", bRes.rate, "syncs/s")
	r.Add("bare p50 time to complete", ms(bRes.p50), "ms")
	r.Add("bare p99 time to complete", ms(bRes.p99), "ms")
	r.AtLeast("ratio temporal/bare", tRes.rate/bRes.rate, "x", 0.5)
	r.Note("the machine is shared: 1-minute load average %s before the burst, %s after it, %s after the bare loop (2 CPUs)", loadBefore, loadAfter, fleetLoadAvg())
	r.Note("bare syncs/s = N / wall time of a plain Go loop calling Core.Activities.SyncEvidence directly (no Temporal client, server or worker; the activity's heartbeats are no-ops outside an activity context) for the same N connections, %d at a time (the SDK's default MaxConcurrentActivityExecutionSize, which worker.New leaves unset), with the same Postgres pool (DATABASE_MAX_CONNS=%d) and simulator; each call is a second sync of its connection like the Temporal one, under a separate run key (bench-bare/<id>)",
		f.bareConcurrent, s.Core.Config.DatabaseMaxConns)
	r.Note("bare outcomes: %s; the bare loop runs only SyncEvidence, while each sync through the workflow also takes two workflow tasks (the sync-now update's, which schedules the activity, and the activity result's) and one SetConnectionState mirror (a local activity inside the second); an attempt shorter than a second sends no heartbeat: that bookkeeping is part of what the ratio measures", bRes.outcomes)
	return burstErr
}

// fleetFirst formats the first failed request for a note.
func fleetFirst(msg string) string {
	if msg == "" {
		return ""
	}
	return "; first failure: " + msg
}

// fleetLoadAvg is the machine's 1-minute load average ("?" where /proc/loadavg is missing).
func fleetLoadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(raw)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// fleetResult is one side of the comparison.
type fleetResult struct {
	rate     float64
	p50, p99 time.Duration
	reqP99   time.Duration
	outcomes string
	retried  int
	wall     time.Duration
	// requests, requestFailures and firstFailure describe the sync-now requests (Temporal side).
	requests, requestFailures int
	firstFailure              string
}

// syncNowBurst sends POST /v1/connections/{id}/sync for every connection at once and waits until
// each connection's sync-now run has finished. A request that fails is counted, not retried: the
// sync it asked for may still happen (the API's handler carries on after the client is gone), so
// the runs are found by connection and trigger, not by the sequence number in the answer. The
// result holds whatever finished even when an error is returned.
func (f *fleetThroughput) syncNowBurst(ctx context.Context, b *Bench, s *Stack, pool *pgxpool.Pool, conns []Connection) (fleetResult, error) {
	n := len(conns)
	sent := make(map[string]time.Time, n) // connection id → request sent
	var failures []string
	var mu sync.Mutex
	var reqLat Latencies
	// Stack.Call gives up after 30 s; under a fleet-wide burst the API may take longer to get the
	// workflow's acceptance, and that wait is part of what is measured.
	hc := &http.Client{Timeout: f.timeout, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer hc.CloseIdleConnections()
	b.Log.Info("fleet: asking every connection to sync now", "n", n)
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			t0 := time.Now()
			_, err := fleetSyncNow(ctx, hc, s, c.ID)
			mu.Lock()
			defer mu.Unlock()
			sent[c.ID] = t0
			if err != nil {
				failures = append(failures, err.Error())
				return
			}
			reqLat.Add(time.Since(t0))
		})
	}
	wg.Wait()
	b.Log.Info("fleet: sync-now requests answered", "seconds", fmt.Sprintf("%.1f", time.Since(start).Seconds()),
		"failed", len(failures), "p99_ms", fmt.Sprintf("%.0f", ms(reqLat.Percentile(99))))
	runs, waitErr := fleetWaitSyncNow(ctx, b, pool, n, n-len(failures), f.timeout)
	res := fleetSummarize(runs)
	res.requests, res.requestFailures = n, len(failures)
	if len(failures) > 0 {
		res.firstFailure = failures[0]
	}
	var lat Latencies
	var last time.Time
	for _, run := range runs {
		lat.Add(run.finished.Sub(sent[run.connID]))
		if run.finished.After(last) {
			last = run.finished
		}
	}
	if len(runs) > 0 {
		res.wall = last.Sub(start)
		res.rate = float64(len(runs)) / res.wall.Seconds()
		res.p50, res.p99 = lat.Percentile(50), lat.Percentile(99)
	}
	res.reqP99 = reqLat.Percentile(99)
	b.Log.Info("fleet: temporal side done", "syncs_per_s", fmt.Sprintf("%.1f", res.rate), "p99_ms", fmt.Sprintf("%.0f", ms(res.p99)))
	return res, waitErr
}

// bareLoop calls SyncEvidence directly for every connection, bareConcurrent at a time.
func (f *fleetThroughput) bareLoop(ctx context.Context, b *Bench, s *Stack, refs []activities.ConnectionRef) (fleetResult, error) {
	b.Log.Info("fleet: bare loop", "n", len(refs), "concurrency", f.bareConcurrent)
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var lat Latencies
	var mu sync.Mutex
	counts := map[string]int{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.bareConcurrent)
	start := time.Now()
	for _, ref := range refs {
		g.Go(func() error {
			t0 := time.Now()
			res, err := s.Core.Activities.SyncEvidence(gctx, activities.SyncInput{
				ConnectionRef: ref, Seq: 1, Trigger: workflows.TriggerSyncNow,
				WorkflowID: "bench-bare/" + ref.ConnectionID.String(), RunID: "bench-bare",
			})
			if err != nil {
				return fmt.Errorf("bare SyncEvidence of connection %s: %w", ref.ConnectionID, err)
			}
			lat.Add(time.Since(t0))
			mu.Lock()
			counts[res.Outcome]++
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fleetResult{}, err
	}
	wall := time.Since(start)
	res := fleetResult{wall: wall, rate: float64(len(refs)) / wall.Seconds(), p50: lat.Percentile(50), p99: lat.Percentile(99),
		outcomes: fleetFormatCounts(counts)}
	b.Log.Info("fleet: bare side done", "syncs_per_s", fmt.Sprintf("%.1f", res.rate), "p99_ms", fmt.Sprintf("%.0f", ms(res.p99)))
	return res, nil
}

// createFleet creates n token connections through the API, conc at a time, and returns them with
// the time it took.
func createFleet(ctx context.Context, b *Bench, scenario string, s *Stack, n, conc int) ([]Connection, time.Duration, error) {
	conns := make([]Connection, n)
	var done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	start := time.Now()
	stopProgress := fleetProgress(b, scenario+": creating connections", func() string { return fmt.Sprintf("%d/%d", done.Load(), n) })
	defer stopProgress()
	for i := range conns {
		g.Go(func() error {
			c, err := s.CreateTokenConnection(gctx)
			if err != nil {
				return fmt.Errorf("create connection %d of %d: %w", i+1, n, err)
			}
			conns[i] = c
			done.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, 0, err
	}
	return conns, time.Since(start), nil
}

// fleetIdleQuery counts connections whose workflow finished its first sync and mirrored the next
// deadline: next_sync_at is only written (non-null) by a mirror taken while no sync runs.
const fleetIdleQuery = `SELECT
	count(*) FILTER (WHERE c.next_sync_at IS NOT NULL AND EXISTS (
		SELECT 1 FROM connector_runs r WHERE r.connection_id = c.id AND r.kind = 'sync' AND r.outcome <> 'running')),
	count(*),
	(SELECT count(*) FROM connector_runs r WHERE r.kind = 'sync' AND (r.outcome = 'failed' OR r.error_kind IS NOT NULL))
	FROM connections c WHERE c.deleted_at IS NULL`

// waitFleetIdle waits until all n connections of the stack's database are idle after their
// initial sync and returns when that was first seen.
func waitFleetIdle(ctx context.Context, b *Bench, scenario string, pool *pgxpool.Pool, n int, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var idle, total, failed int
	var shown atomic.Value
	shown.Store("0 idle")
	stopProgress := fleetProgress(b, scenario+": waiting for idle workflows", func() string { return shown.Load().(string) })
	defer stopProgress()
	for {
		if err := pool.QueryRow(ctx, fleetIdleQuery).Scan(&idle, &total, &failed); err != nil {
			return time.Time{}, fmt.Errorf("count idle connections: %w", err)
		}
		shown.Store(fmt.Sprintf("%d/%d idle, %d runs with failed attempts", idle, n, failed))
		if idle >= n {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("only %d of %d connections (%d in the database) idle after %s; %d sync runs failed or had failed attempts%s",
				idle, n, total, timeout, failed, fleetRunErrors(ctx, pool))
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// fleetRunErrors returns a few distinct errors stored on sync runs, for a failure message.
func fleetRunErrors(ctx context.Context, pool *pgxpool.Pool) string {
	rows, err := pool.Query(ctx, `SELECT DISTINCT left(coalesce(error, ''), 300) FROM connector_runs WHERE error IS NOT NULL LIMIT 3`)
	if err != nil {
		return ""
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var e string
		if rows.Scan(&e) == nil {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "; errors: " + strings.Join(out, " | ")
}

// fleetRefs lists every connection of the stack's database.
func fleetRefs(ctx context.Context, pool *pgxpool.Pool) ([]activities.ConnectionRef, error) {
	rows, err := pool.Query(ctx, `SELECT org_id, id FROM connections WHERE deleted_at IS NULL ORDER BY created_at`)
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	defer rows.Close()
	var out []activities.ConnectionRef
	for rows.Next() {
		var ref activities.ConnectionRef
		if err := rows.Scan(&ref.OrgID, &ref.ConnectionID); err != nil {
			return nil, err
		}
		out = append(out, ref)
	}
	return out, rows.Err()
}

// fleetRun is a connector run that is no longer running.
type fleetRun struct {
	connID   string
	outcome  string
	attempts int
	finished time.Time
}

// fleetStall is how long fleetWaitSyncNow keeps waiting for the syncs of failed requests once
// every accepted one has finished and nothing else finishes.
const fleetStall = time.Minute

// fleetWaitSyncNow polls Postgres until n connection workflows have finished a sync_now run (any
// outcome but running). It gives up after timeout, or earlier when at least accepted runs have
// finished and no further one finished for fleetStall (those requests failed and their syncs
// never came). It returns what finished in any case.
func fleetWaitSyncNow(ctx context.Context, b *Bench, pool *pgxpool.Pool, n, accepted int, timeout time.Duration) ([]fleetRun, error) {
	deadline := time.Now().Add(timeout)
	var got []fleetRun
	var finished atomic.Int64
	stopProgress := fleetProgress(b, "fleet: temporal syncs", func() string { return fmt.Sprintf("%d/%d finished", finished.Load(), n) })
	defer stopProgress()
	lastChange := time.Now()
	for {
		rows, err := pool.Query(ctx, `SELECT connection_id::text, outcome, attempts, finished_at FROM connector_runs
			WHERE kind = 'sync' AND triggered_by = $1 AND starts_with(workflow_id, $2) AND outcome <> 'running' AND finished_at IS NOT NULL`,
			workflows.TriggerSyncNow, workflows.WorkflowIDPrefix)
		if err != nil {
			return got, fmt.Errorf("poll runs: %w", err)
		}
		var cur []fleetRun
		for rows.Next() {
			var fr fleetRun
			if err := rows.Scan(&fr.connID, &fr.outcome, &fr.attempts, &fr.finished); err != nil {
				rows.Close()
				return got, err
			}
			cur = append(cur, fr)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return got, err
		}
		if len(cur) != len(got) {
			lastChange = time.Now()
		}
		got = cur
		finished.Store(int64(len(got)))
		switch {
		case len(got) >= n:
			return got, nil
		case len(got) >= accepted && time.Since(lastChange) > fleetStall:
			return got, fmt.Errorf("only %d of %d sync-now syncs finished (%d requests failed; nothing more finished for %s)", len(got), n, n-accepted, fleetStall)
		case time.Now().After(deadline):
			return got, fmt.Errorf("only %d of %d sync-now syncs finished after %s%s", len(got), n, timeout, fleetRunErrors(ctx, pool))
		}
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// fleetSummarize counts outcomes and retried runs.
func fleetSummarize(runs []fleetRun) fleetResult {
	counts := map[string]int{}
	retried := 0
	for _, run := range runs {
		counts[run.outcome]++
		if run.attempts > 1 {
			retried++
		}
	}
	return fleetResult{outcomes: fleetFormatCounts(counts), retried: retried}
}

func fleetFormatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// progress logs what() every ten seconds until the returned function is called.
func fleetProgress(b *Bench, msg string, what func() string) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				b.Log.Info(msg, "progress", what())
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// fleetRSSWatch follows a process's resident set size: it resets the kernel's high-water mark when it
// may (writing 5 to /proc/<pid>/clear_refs) and also samples VmRSS, in case it may not.
type fleetRSSWatch struct {
	pid     string
	resetOK bool
	done    chan struct{}
	wg      sync.WaitGroup
	max     atomic.Int64 // KiB
}

func startFleetRSSWatch(pid string) *fleetRSSWatch {
	w := &fleetRSSWatch{pid: pid, done: make(chan struct{})}
	w.resetOK = os.WriteFile("/proc/"+pid+"/clear_refs", []byte("5"), 0) == nil
	w.sample()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-t.C:
				w.sample()
			}
		}
	}()
	return w
}

func (w *fleetRSSWatch) sample() {
	m, err := ReadProcMemory(w.pid)
	if err != nil {
		return
	}
	kib := int64(m.RSSMiB * 1024)
	for {
		cur := w.max.Load()
		if kib <= cur || w.max.CompareAndSwap(cur, kib) {
			return
		}
	}
}

// stop ends sampling and returns the peak in MiB: VmHWM when the reset worked, else the highest
// sample.
func (w *fleetRSSWatch) stop() (float64, bool) {
	close(w.done)
	w.wg.Wait()
	w.sample()
	sampled := float64(w.max.Load()) / 1024
	if w.resetOK {
		if m, err := ReadProcMemory(w.pid); err == nil && m.PeakMiB > 0 {
			return max(m.PeakMiB, sampled), true
		}
	}
	return sampled, false
}

// fleetSyncNow sends POST /v1/connections/{id}/sync with the bench org's key and returns the
// sequence number of the sync the workflow queued.
func fleetSyncNow(ctx context.Context, hc *http.Client, s *Stack, id string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", s.API+"/v1/connections/"+id+"/sync", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.Key)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("sync-now %s: %w", id, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("sync-now %s: read answer: %w", id, err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("sync-now %s: %d %s", id, resp.StatusCode, bytes.TrimSpace(raw))
	}
	var ans struct {
		Seq int64 `json:"sync_seq"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil || ans.Seq < 1 {
		return 0, fmt.Errorf("sync-now %s: unexpected answer %s", id, bytes.TrimSpace(raw))
	}
	return ans.Seq, nil
}
