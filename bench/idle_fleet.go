package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/jiraconnect/jiraconnect/workflows"
)

// idleFleet starts a large fleet of connection workflows and measures what they cost while they
// wait for their next daily sync: the time to get there, the memory of a worker process that
// holds them (a separate `jiraconnect worker`, so its RSS is its own) and the Temporal store.
type idleFleet struct {
	connections int
	create      int
	settle      time.Duration
	samples     int
	interval    time.Duration
	timeout     time.Duration
}

func newIdleFleet() *idleFleet {
	return &idleFleet{connections: 10000, create: 32, settle: 10 * time.Second, samples: 10, interval: time.Second, timeout: time.Hour}
}

func (*idleFleet) Name() string { return "idle-fleet" }
func (*idleFleet) Title() string {
	return "Idle fleet cost: N connection workflows started and idle between syncs, worker in its own process"
}

func (f *idleFleet) Flags(fs *flag.FlagSet) {
	fs.IntVar(&f.connections, "idle-fleet.connections", f.connections, "connections created (each starts a workflow that syncs once, then idles)")
	fs.IntVar(&f.create, "idle-fleet.create-concurrency", f.create, "concurrent POST /v1/connections")
	fs.DurationVar(&f.settle, "idle-fleet.settle", f.settle, "wait after the fleet is idle before sampling the worker's memory")
	fs.IntVar(&f.samples, "idle-fleet.samples", f.samples, "worker RSS samples taken once idle (the maximum is reported)")
	fs.DurationVar(&f.interval, "idle-fleet.sample-interval", f.interval, "time between worker RSS samples")
	fs.DurationVar(&f.timeout, "idle-fleet.timeout", f.timeout, "how long starting the fleet (created and idle) may take")
}

func (f *idleFleet) Quick() {
	f.connections = 30
	f.settle = time.Second
	f.samples = 3
	f.interval = 500 * time.Millisecond
}

func (f *idleFleet) Run(ctx context.Context, b *Bench, r *Result) (err error) {
	if f.connections < 1 || f.create < 1 || f.samples < 1 {
		return errors.New("idle-fleet: connections, create-concurrency and samples must be positive")
	}
	n := f.connections
	r.Parameters["connections"] = n
	r.Parameters["create_concurrency"] = f.create
	r.Parameters["rss_samples"] = f.samples
	r.Parameters["rss_sample_interval"] = f.interval.String()
	r.Parameters["settle"] = f.settle.String()

	bin, err := b.Binary(ctx, "./cmd/jiraconnect")
	if err != nil {
		return err
	}
	s, err := StartStack(ctx, b, StackOptions{Temporal: true, API: true, Seed: fleetSeed})
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

	w, err := startIdleWorker(ctx, b, bin, s)
	if err != nil {
		return err
	}
	defer func() {
		if serr := w.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	if m, err := ReadProcMemory(w.pidString()); err == nil {
		r.Add("worker RSS before the fleet", m.RSSMiB, "MiB")
	}
	storeBefore, mainBefore := s.TemporalStoreBytes(), idleTemporalMainBytes(s)

	// Time to start: from the first POST until every workflow has finished its initial sync and
	// mirrored its next deadline.
	b.Log.Info("idle-fleet: starting the fleet", "n", n)
	start := time.Now()
	conns, created, err := createFleet(ctx, b, "idle-fleet", s, n, f.create)
	if err != nil {
		return w.withLog(err)
	}
	b.Log.Info("idle-fleet: all connections created", "seconds", fmt.Sprintf("%.1f", created.Seconds()))
	idleAt, err := waitFleetIdle(ctx, b, "idle-fleet", pool, n, f.timeout-time.Since(start))
	if err != nil {
		return w.withLog(err)
	}
	toIdle := idleAt.Sub(start)
	b.Log.Info("idle-fleet: fleet idle", "seconds", fmt.Sprintf("%.1f", toIdle.Seconds()))
	r.Add("time to start N (created + initial sync + idle)", toIdle.Seconds(), "s")
	r.Add("connections created/s", float64(n)/created.Seconds(), "conn/s")
	r.Add("workflows started to idle/s", float64(n)/toIdle.Seconds(), "wf/s")
	if m, err := ReadProcMemory(w.pidString()); err == nil {
		r.Add("worker peak RSS while starting", m.PeakMiB, "MiB")
	}

	running, err := idleCountRunning(ctx, s, n)
	if err != nil {
		return w.withLog(err)
	}
	r.Add("running connection workflows (visibility)", float64(running), "workflows")

	// Idle memory.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(f.settle):
	}
	var peak float64
	for i := range f.samples {
		m, err := ReadProcMemory(w.pidString())
		if err != nil {
			return w.withLog(fmt.Errorf("worker process: %w", err))
		}
		peak = max(peak, m.RSSMiB)
		if i < f.samples-1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(f.interval):
			}
		}
	}
	if err := w.alive(); err != nil {
		return err
	}
	r.AtMost("worker RSS, fleet idle", peak, "MiB", 300)
	r.Add("worker RSS per idle workflow", peak*1024/float64(n), "KiB")

	// Temporal store.
	storeAfter, mainAfter := s.TemporalStoreBytes(), idleTemporalMainBytes(s)
	r.Add("Temporal store per connection (db+WAL growth)", float64(storeAfter-storeBefore)/float64(n), "bytes")
	r.Add("Temporal store per connection (db file growth)", float64(mainAfter-mainBefore)/float64(n), "bytes")
	events, err := idleHistoryEvents(ctx, s, conns[0].ID)
	if err != nil {
		return err
	}
	r.Add("history events per idle workflow", float64(events), "events")

	r.Note("the worker is the production binary (`jiraconnect worker`, built from ./cmd/jiraconnect) in its own process with the stack's environment; the Temporal server (SQLite), the API and the Jira simulator run in the bench process")
	r.Note("time to start N = from the first POST /v1/connections until Postgres shows every connection idle: its initial sync run finished and the workflow's state mirror wrote next_sync_at (only written while no sync runs); creation runs %d requests at a time and took %.1fs of it; each creation verifies the credentials against the simulator, seals them and starts the workflow", f.create, created.Seconds())
	r.Note("running connection workflows = CountWorkflowExecutions(WorkflowType='ConnectionWorkflow' AND ExecutionStatus='Running') on the SQLite visibility store, polled until it equals N (at most a minute)")
	r.Note("worker RSS, fleet idle = highest VmRSS of the worker process over %d samples %s apart, taken %s after the fleet became idle; the worker keeps up to WORKER_WORKFLOW_CACHE_SIZE (default 2,000) idle workflows in the SDK's sticky cache and rebuilds the others from their history at their next task, so that memory is part of the figure", f.samples, f.interval, f.settle)
	r.Note("Temporal store per connection = growth of temporal.sqlite (+ -wal, -shm) from before the first connection to the idle fleet, divided by N; the bench does not checkpoint a WAL, so db+WAL can count pages twice and the db file alone can miss pages only in the WAL (db file %s → %s; -wal and -shm %s → %s)",
		idleMiB(mainBefore), idleMiB(mainAfter), idleMiB(storeBefore-mainBefore), idleMiB(storeAfter-mainAfter))
	r.Note("history events per idle workflow = events in the history of the first connection's workflow once idle (start, the initial sync and its timer; since local-bookkeeping the load and state mirrors are local-activity markers, not activities)")
	if running != int64(n) {
		return fmt.Errorf("visibility counts %d running connection workflows, want %d", running, n)
	}
	return nil
}

func idleMiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// idleTemporalMainBytes is the size of the Temporal SQLite file alone, without its WAL.
func idleTemporalMainBytes(s *Stack) int64 {
	fi, err := os.Stat(filepath.Join(s.Dir, "temporal.sqlite"))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// idleCountRunning asks Temporal's visibility store how many connection workflows run,
// polling for up to a minute until it says want (visibility is updated asynchronously).
func idleCountRunning(ctx context.Context, s *Stack, want int) (int64, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := s.TC.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: s.Core.Config.TemporalNamespace,
			Query:     `WorkflowType = 'ConnectionWorkflow' AND ExecutionStatus = 'Running'`,
		})
		if err != nil {
			return 0, fmt.Errorf("count running workflows: %w", err)
		}
		if resp.GetCount() == int64(want) || time.Now().After(deadline) {
			return resp.GetCount(), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// idleHistoryEvents counts the events in a connection workflow's history.
func idleHistoryEvents(ctx context.Context, s *Stack, connID string) (int, error) {
	id, err := uuid.Parse(connID)
	if err != nil {
		return 0, fmt.Errorf("connection id %q: %w", connID, err)
	}
	it := s.TC.GetWorkflowHistory(ctx, workflows.WorkflowID(id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	for it.HasNext() {
		if _, err := it.Next(); err != nil {
			return 0, fmt.Errorf("read history of %s: %w", workflows.WorkflowID(id), err)
		}
		n++
	}
	return n, nil
}

// idleWorker is a `jiraconnect worker` started by the bench.
type idleWorker struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // set before exited is closed
}

// startIdleWorker runs `bin worker` with the stack's environment, its output in a log file in
// the work dir, and waits until its /readyz answers.
func startIdleWorker(ctx context.Context, b *Bench, bin string, s *Stack) (*idleWorker, error) {
	env := s.Env()
	addr := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "WORKER_ADDR="); ok {
			addr = v // the stack's value comes last
		}
	}
	if addr == "" {
		return nil, errors.New("idle-fleet: the stack has no WORKER_ADDR")
	}
	logPath := filepath.Join(b.WorkDir, fmt.Sprintf("idle-fleet-worker-%d.log", time.Now().UnixNano()))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("worker log: %w", err)
	}
	cmd := exec.Command(bin, "worker")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s worker: %w", bin, err)
	}
	w := &idleWorker{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		logFile.Close()
		close(w.exited)
	}()
	if err := waitHTTP(ctx, "http://"+addr+"/readyz", time.Minute); err != nil {
		_ = w.stop()
		return nil, w.withLog(fmt.Errorf("worker process: %w", err))
	}
	b.Log.Info("idle-fleet: worker process ready", "pid", cmd.Process.Pid)
	return w, nil
}

func (w *idleWorker) pidString() string { return strconv.Itoa(w.cmd.Process.Pid) }

// alive reports an error if the worker has exited.
func (w *idleWorker) alive() error {
	select {
	case <-w.exited:
		return w.withLog(fmt.Errorf("worker process exited early: %v", w.err))
	default:
		return nil
	}
}

// stop sends SIGTERM and waits up to 30 s for a clean exit, then kills the process.
func (w *idleWorker) stop() error {
	select {
	case <-w.exited:
		return nil // already gone; alive reports that
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
		if w.err != nil {
			return w.withLog(fmt.Errorf("worker process after SIGTERM: %w", w.err))
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.exited
		return w.withLog(errors.New("worker process did not stop within 30s of SIGTERM; killed"))
	}
}

// withLog appends the tail of the worker's log to err.
func (w *idleWorker) withLog(err error) error {
	raw, rerr := os.ReadFile(w.log)
	if rerr != nil || len(raw) == 0 {
		return err
	}
	return fmt.Errorf("%w\nworker log (tail):\n%s", err, idleLogTail(string(raw), 4000))
}

// idleLogTail is the last n bytes of a log.
func idleLogTail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
