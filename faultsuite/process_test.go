package faultsuite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process supervises one child process of a test: it starts it with an explicit environment
// (nothing inherited but PATH and HOME, so the machine's own DATABASE_URL and friends never leak
// in), appends its stdout and stderr to a log file that survives restarts, waits for it to be
// ready, and kills, stops or restarts it on request. An exit the test did not ask for is
// remembered and fails the test.
type process struct {
	t       *testing.T
	name    string
	bin     string
	args    []string
	env     []string
	logPath string
	// ready reports whether the started process serves; start polls it.
	ready func(ctx context.Context) error

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	expected bool // the current run is being stopped or killed on purpose
	starts   int
	crashes  []string
}

func newProcess(t *testing.T, name, bin string, args []string, env map[string]string, logPath string, ready func(ctx context.Context) error) *process {
	e := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		e = append(e, k+"="+v)
	}
	return &process{t: t, name: name, bin: bin, args: args, env: e, logPath: logPath, ready: ready}
}

// start launches the process and waits up to readyTimeout for it to be ready.
func (p *process) start(readyTimeout time.Duration) {
	p.t.Helper()
	if err := p.tryStart(readyTimeout); err != nil {
		p.t.Fatalf("%s: %v\n%s", p.name, err, p.tail(40))
	}
}

func (p *process) tryStart(readyTimeout time.Duration) error {
	p.mu.Lock()
	if p.cmd != nil && !isClosed(p.exited) {
		p.mu.Unlock()
		return errors.New("already running")
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	p.starts++
	fmt.Fprintf(f, "==== faultsuite: start #%d of %s at %s\n", p.starts, p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		_ = f.Close()
		return fmt.Errorf("start: %w", err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.waitErr, p.expected = cmd, exited, nil, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		_ = f.Close()
		p.mu.Lock()
		p.waitErr = err
		if !p.expected {
			p.crashes = append(p.crashes, fmt.Sprintf("%s exited unexpectedly at %s: %v", p.name, time.Now().Format(time.RFC3339Nano), err))
		}
		p.mu.Unlock()
		close(exited)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var last error
	for {
		if isClosed(exited) {
			return fmt.Errorf("exited before it was ready: %v", p.exitErr())
		}
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		last = p.ready(rctx)
		rcancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %v", readyTimeout, last)
		case <-exited:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL (no chance to clean up, like a crashed node) and waits for the exit.
func (p *process) kill() {
	p.t.Helper()
	p.signalAndWait(syscall.SIGKILL, 10*time.Second)
}

// stop sends SIGTERM and waits for a clean exit; it fails the test when the process needs longer
// than timeout (then it is killed) or exits with an error.
func (p *process) stop(timeout time.Duration) {
	p.t.Helper()
	if err := p.signalAndWait(syscall.SIGTERM, timeout); err != nil {
		p.t.Errorf("%s did not stop cleanly on SIGTERM: %v\n%s", p.name, err, p.tail(20))
	}
}

// signalAndWait returns the process's exit error (nil for exit status 0).
func (p *process) signalAndWait(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	if cmd == nil || isClosed(exited) {
		p.mu.Unlock()
		return nil
	}
	p.expected = true
	p.mu.Unlock()
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("still running %s after %v; killed", timeout, sig)
	}
	return p.exitErr()
}

func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// running reports whether the process is up.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.exited)
}

// unexpectedExits lists the exits the test did not cause.
func (p *process) unexpectedExits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.crashes...)
}

// log returns everything the process has written so far (all its runs).
func (p *process) log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	return string(b)
}

// logSinceLastStart returns what the current (or last) run has written.
func (p *process) logSinceLastStart() string {
	l := p.log()
	if i := strings.LastIndex(l, "==== faultsuite: start #"); i >= 0 {
		return l[i:]
	}
	return l
}

// tail returns the last n lines of the log, each cut to a readable length.
func (p *process) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 600 {
			lines[i] = l[:600] + "…"
		}
	}
	return fmt.Sprintf("---- %s log tail (%s) ----\n%s\n---- end of %s ----", p.name, p.logPath, strings.Join(lines, "\n"), p.name)
}

func isClosed(ch chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
