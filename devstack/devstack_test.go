package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/jiraconnect/jiraconnect/workflows"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The dev stack's Temporal state lives in a SQLite file: a workflow started before a restart is
// still there, and still running, after it. The UI answers on its port.
func TestTemporalStateSurvivesRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Temporal server twice")
	}
	dir := t.TempDir()
	port := freePort(t)
	start := func() (*Temporal, client.Client) {
		t.Helper()
		srv, err := StartTemporal(TemporalOptions{DataDir: dir, FrontendPort: port})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := WaitReady(ctx, srv.HostPort); err != nil {
			t.Fatal(err)
		}
		c, err := client.DialContext(ctx, client.Options{HostPort: srv.HostPort, Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		return srv, c
	}

	srv, c := start()
	uiPort := freePort(t)
	ui, err := StartUI("127.0.0.1", uiPort, srv.HostPort, "default")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(uiPort) + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("temporal ui not serving: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ui.Stop()

	ctx := context.Background()
	id := workflows.WorkflowID(uuid.New())
	// No worker runs here: the workflow stays scheduled, which is exactly the state to persist.
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "devstack-test"},
		workflows.ConnectionWorkflow, workflows.ConnectionInput{OrgID: uuid.New(), ConnectionID: uuid.New()})
	if err != nil {
		t.Fatal(err)
	}
	// The store runs in WAL mode: its write-ahead log exists while the server has it open.
	if _, err := os.Stat(filepath.Join(dir, "temporal.sqlite-wal")); err != nil {
		t.Errorf("temporal.sqlite is not in WAL mode: %v", err)
	}
	c.Close()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	srv, c = start()
	defer func() { c.Close(); _ = srv.Stop() }()
	desc, err := c.DescribeWorkflowExecution(ctx, id, run.GetRunID())
	if err != nil {
		t.Fatalf("workflow lost across restart: %v", err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus().String(); st != "Running" {
		t.Fatalf("workflow status after restart: %s", st)
	}
}

// A restarted dev stack serves at once: a workflow started right after a restart runs to
// completion through matching, history and a worker within seconds. With new internal ports on
// every start, ringpop spent its 30 s maximum join duration on the previous run's addresses and
// the first update took about 45 s.
func TestRestartedServerServesAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Temporal server three times")
	}
	dir := t.TempDir()
	port := freePort(t)
	var ports []int
	for round := 1; round <= 3; round++ {
		srv, err := StartTemporal(TemporalOptions{DataDir: dir, FrontendPort: port})
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		if b, err := os.ReadFile(filepath.Join(dir, servicePortsFile)); err != nil || json.Unmarshal(b, &got) != nil || len(got) != 7 {
			t.Fatalf("round %d: no remembered service ports (%v)", round, err)
		}
		if ports != nil && !slices.Equal(got, ports) {
			t.Fatalf("round %d: internal ports changed across a restart: %v, then %v", round, ports, got)
		}
		ports = got
		began := time.Now()
		out, err := roundTrip(srv, "devstack-restart", round, 10*time.Second)
		if stopErr := srv.Stop(); stopErr != nil {
			t.Fatal(stopErr)
		}
		if err != nil || out != round {
			t.Fatalf("round %d: a workflow did not complete within 10 s of the start (%v after the start: %v, %d)", round, time.Since(began), err, out)
		}
	}
}

func echoWorkflow(_ workflow.Context, n int) (int, error) { return n, nil }

// roundTrip runs one workflow through srv on a worker of its own (frontend, matching, history and
// the worker all take part) and returns its result, within timeout from the call.
func roundTrip(srv *Temporal, taskQueue string, n int, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := WaitReady(ctx, srv.HostPort); err != nil {
		return 0, err
	}
	c, err := client.DialContext(ctx, client.Options{HostPort: srv.HostPort, Namespace: "default"})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	w := sdkworker.New(c, taskQueue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(echoWorkflow, workflow.RegisterOptions{Name: "echo"})
	if err := w.Start(); err != nil {
		return 0, err
	}
	defer w.Stop()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: taskQueue}, "echo", n)
	if err != nil {
		return 0, err
	}
	var out int
	err = run.Get(ctx, &out)
	return out, err
}

// syncBuffer is a log sink the server writes to from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A clean stop prints nothing alarming: the services' complaints about each other leaving
// (matching's "error fetching user data from parent", clients' dial errors) stay out of the log.
func TestStopIsQuiet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Temporal server")
	}
	logs := &syncBuffer{}
	srv, err := StartTemporal(TemporalOptions{DataDir: t.TempDir(), FrontendPort: freePort(t), LogOutput: logs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(srv, "devstack-quiet", 1, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	before := len(logs.String())
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // late goroutines of the stopped services
	for _, line := range strings.Split(logs.String()[before:], "\n") {
		if strings.Contains(line, `"level":"error"`) || strings.Contains(line, `"level":"warn"`) {
			t.Errorf("logged while stopping: %.300s", line)
		}
	}
}
