// Command bench runs jiraconnect's benchmark scenarios against the Jira simulator over loopback
// and writes their figures to bench/results/latest.json (`make bench`). Every scenario states its
// figure and its target; a missed target is reported as MISSED, never hidden. See
// bench/README.md for the scenarios, how to run one alone or with other sizes, and the latest
// figures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Scenario is one benchmark. Its parameters are flags named "<scenario>.<param>"; Quick shrinks
// them to a smoke-test size (used by the package test so the harness cannot rot unnoticed).
type Scenario interface {
	Name() string
	Title() string
	Flags(fs *flag.FlagSet)
	Quick()
	// Run measures and records figures and parameters in r. An error ends the scenario; figures
	// already recorded stay in the report.
	Run(ctx context.Context, b *Bench, r *Result) error
}

// scenarios lists every scenario in the order `make bench` runs them.
func scenarios() []Scenario {
	return []Scenario{
		newSyncCost(),
		newFleetThroughput(),
		newIdleFleet(),
		newFindingLatency(),
		newInboundLatency(),
		newRateLimitedPush(),
		newObservationStorage(),
	}
}

// Bench is what scenarios share: loggers, a scratch directory and the binaries built for
// scenarios that run real processes.
type Bench struct {
	// Log reports progress to the person running the benchmarks (stderr).
	Log *slog.Logger
	// Quiet is handed to the system under test, whose own logs would drown the progress lines.
	Quiet *slog.Logger
	// WorkDir is a scratch directory removed at the end of the run.
	WorkDir string

	mu       sync.Mutex
	binaries map[string]string
}

// Binary builds the main package pkg (e.g. "./cmd/jiraconnect") once per run and returns the
// executable's path.
func (b *Bench) Binary(ctx context.Context, pkg string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.binaries[pkg]; ok {
		return p, nil
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	out := filepath.Join(b.WorkDir, "bin", filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, msg)
	}
	if b.binaries == nil {
		b.binaries = map[string]string{}
	}
	b.binaries[pkg] = out
	return out, nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("find the module root: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command's own flags.
type options struct {
	only  string
	out   string
	quick bool
	list  bool
	// cpuProfile, when set, is where a CPU profile of the whole run goes (every part of the
	// system runs in this process, so it shows the Temporal server, worker, API and simulator
	// side by side: go tool pprof -top bench <file>).
	cpuProfile string
	// pprofAddr, when set, serves net/http/pprof there while the bench runs, for goroutine and
	// block profiles in the middle of a scenario (where is the fleet waiting?).
	pprofAddr string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	all := scenarios()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.only, "run", "", "comma-separated scenario names to run (default: all)")
	fs.StringVar(&o.out, "out", "bench/results/latest.json", "where to write the JSON report (\"\" for nowhere)")
	fs.BoolVar(&o.quick, "quick", false, "smoke-test sizes: checks every scenario works, measures nothing meaningful")
	fs.BoolVar(&o.list, "list", false, "list the scenarios and exit")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	fs.StringVar(&o.pprofAddr, "pprof", "", "serve net/http/pprof on this address while running (e.g. 127.0.0.1:6060)")
	for _, s := range all {
		s.Flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.list {
		for _, s := range all {
			fmt.Fprintf(stdout, "%-18s %s\n", s.Name(), s.Title())
		}
		return nil
	}
	selected, err := selectScenarios(all, o.only)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "jiraconnect-bench-")
	if err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	defer os.RemoveAll(work)
	if o.cpuProfile != "" {
		stop, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if o.pprofAddr != "" {
		stop, err := servePprof(o.pprofAddr)
		if err != nil {
			return err
		}
		defer stop()
	}
	b := &Bench{Log: slog.New(slog.NewTextHandler(stderr, nil)), Quiet: quietLogger(), WorkDir: work}
	rep := newReport()
	failed := 0
	for _, s := range selected {
		if o.quick {
			s.Quick()
		}
		r := &Result{Scenario: s.Name(), Title: s.Title(), Parameters: map[string]any{}}
		b.Log.Info("scenario starting", "scenario", s.Name())
		start := time.Now()
		if err := s.Run(ctx, b, r); err != nil {
			r.Error = err.Error()
			failed++
			b.Log.Error("scenario failed", "scenario", s.Name(), "err", err)
		}
		r.Seconds = time.Since(start).Seconds()
		rep.Results = append(rep.Results, r)
		b.Log.Info("scenario done", "scenario", s.Name(), "seconds", fmt.Sprintf("%.1f", r.Seconds))
		if ctx.Err() != nil {
			break
		}
	}
	rep.PrintTable(stdout)
	if o.out != "" {
		if err := rep.WriteJSON(o.out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", o.out)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed > 0 {
		return fmt.Errorf("%d scenario(s) failed", failed)
	}
	return nil
}

// startCPUProfile starts profiling into path; the returned function stops it and closes the file.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: close CPU profile:", err)
		}
	}, nil
}

// servePprof serves the runtime profiles on addr; the returned function stops the server.
func servePprof(addr string) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-pprof: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

func selectScenarios(all []Scenario, only string) ([]Scenario, error) {
	if strings.TrimSpace(only) == "" {
		return all, nil
	}
	byName := map[string]Scenario{}
	for _, s := range all {
		byName[s.Name()] = s
	}
	var out []Scenario
	for _, n := range strings.Split(only, ",") {
		n = strings.TrimSpace(n)
		s, ok := byName[n]
		if !ok {
			names := make([]string, 0, len(all))
			for _, s := range all {
				names = append(names, s.Name())
			}
			return nil, fmt.Errorf("-run: unknown scenario %q (known: %s)", n, strings.Join(names, ", "))
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("-run: no scenario named")
	}
	return out, nil
}
