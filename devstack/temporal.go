// Package devstack runs the development Temporal server and Web UI inside the jiraconnect-dev
// process: a single-node server persisted to a SQLite file (so workflows survive restarts) and
// the UI on its own port. Production never imports this package; cmd/jiraconnect talks to an
// external Temporal cluster.
package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	tlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/jiraconnect/jiraconnect/worker"
)

// TemporalOptions configures the embedded server.
type TemporalOptions struct {
	// DataDir holds temporal.sqlite; created if missing.
	DataDir string
	// IP the services bind to; the dev stack is local-only by default.
	IP string
	// FrontendPort is the gRPC port clients dial (7233 by default).
	FrontendPort int
	Namespace    string
	// LogLevel is the server's own log level (zap: debug, info, warn, error, fatal); "warn" when
	// empty. The server logs JSON to LogOutput.
	LogLevel string
	// LogOutput receives the server's log lines; os.Stdout when nil.
	LogOutput io.Writer
}

// Temporal is a running embedded server.
type Temporal struct {
	server   temporal.Server
	HostPort string
	// level is the server's log level, raised while it stops: its services report each other's
	// departure as errors (matching cannot reach its partitions' parents, clients cannot dial a
	// service that just closed), which on a clean stop alarms without informing.
	level zap.AtomicLevel
}

// StartTemporal creates the SQLite schema on first run, registers the namespace with
// jiraconnect's search attributes, and starts all four services in-process.
func StartTemporal(opts TemporalOptions) (*Temporal, error) {
	if opts.IP == "" {
		opts.IP = "127.0.0.1"
	}
	if opts.FrontendPort == 0 {
		opts.FrontendPort = 7233
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("temporal data dir: %w", err)
	}
	dbFile := filepath.Join(opts.DataDir, "temporal.sqlite")
	sqlCfg := &config.SQL{
		PluginName:   sqliteplugin.PluginName,
		DatabaseName: dbFile,
		// Keys other than URI parameters ("mode") are pragma names: the plugin turns each into
		// _pragma=<key>=<value>, and SQLite silently ignores a pragma it does not know — with
		// mattn-style "_journal_mode" the store ran in rollback-journal mode, several fsyncs per
		// commit, and fleet benchmarks got half the throughput. WAL with synchronous=FULL keeps
		// every commit durable.
		ConnectAttributes: map[string]string{"mode": "rwc", "journal_mode": "wal", "synchronous": "2"},
	}
	if _, err := os.Stat(dbFile); errors.Is(err, os.ErrNotExist) {
		if err := sqlite.SetupSchema(sqlCfg); err != nil {
			return nil, fmt.Errorf("create temporal schema in %s: %w", dbFile, err)
		}
	}
	ns, err := sqlite.NewNamespaceConfig("active", opts.Namespace, false, worker.SearchAttributes())
	if err != nil {
		return nil, fmt.Errorf("namespace config: %w", err)
	}
	if err := sqlite.CreateNamespaces(sqlCfg, ns); err != nil {
		return nil, fmt.Errorf("register namespace %s: %w", opts.Namespace, err)
	}

	ports, err := servicePorts(opts.DataDir, opts.IP, 7)
	if err != nil {
		return nil, err
	}
	// The metrics listener is not part of membership and the server does not release it on Stop,
	// so it gets a fresh port every start.
	metricsPort, err := freePorts(opts.IP, 1)
	if err != nil {
		return nil, err
	}
	frontendAddr := net.JoinHostPort(opts.IP, strconv.Itoa(opts.FrontendPort))
	svc := func(grpc, membership int) config.Service {
		return config.Service{RPC: config.RPC{GRPCPort: grpc, MembershipPort: membership, BindOnIP: opts.IP}}
	}
	cfg := &config.Config{
		Global: config.Global{
			Membership: config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: opts.IP},
			Metrics: &metrics.Config{Prometheus: &metrics.PrometheusConfig{
				ListenAddress: net.JoinHostPort(opts.IP, strconv.Itoa(metricsPort[0])), HandlerPath: "/metrics"}},
		},
		Persistence: config.Persistence{
			DefaultStore:     sqliteplugin.PluginName,
			VisibilityStore:  sqliteplugin.PluginName,
			NumHistoryShards: 1,
			DataStores:       map[string]config.DataStore{sqliteplugin.PluginName: {SQL: sqlCfg}},
		},
		ClusterMetadata: &cluster.Config{
			EnableGlobalNamespace:    false,
			FailoverVersionIncrement: 10,
			MasterClusterName:        "active",
			CurrentClusterName:       "active",
			ClusterInformation: map[string]cluster.ClusterInformation{
				"active": {Enabled: true, InitialFailoverVersion: 1, RPCAddress: frontendAddr},
			},
		},
		DCRedirectionPolicy: config.DCRedirectionPolicy{Policy: "noop"},
		Services: map[string]config.Service{
			"frontend": svc(opts.FrontendPort, ports[0]),
			"history":  svc(ports[1], ports[2]),
			"matching": svc(ports[3], ports[4]),
			"worker":   svc(ports[5], ports[6]),
		},
		Archival: config.Archival{
			History:    config.HistoryArchival{State: "disabled"},
			Visibility: config.VisibilityArchival{State: "disabled"},
		},
		NamespaceDefaults: config.NamespaceDefaults{Archival: config.ArchivalNamespaceDefaults{
			History:    config.HistoryArchivalNamespaceDefaults{State: "disabled"},
			Visibility: config.VisibilityArchivalNamespaceDefaults{State: "disabled"},
		}},
		PublicClient: config.PublicClient{HostPort: frontendAddr},
	}
	// The server logs through zap; warnings and errors only, so the dev stack's own logs stay
	// readable.
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	if opts.LogOutput == nil {
		opts.LogOutput = os.Stdout
	}
	level := zap.NewAtomicLevelAt(tlog.ParseZapLevel(opts.LogLevel))
	encoding := tlog.DefaultZapEncoderConfig
	encoding.CallerKey, encoding.EncodeCaller = zapcore.OmitKey, nil
	logger := tlog.NewZapLogger(zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(encoding), zapcore.AddSync(opts.LogOutput), level)))
	authorizer, err := authorization.GetAuthorizerFromConfig(&cfg.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("temporal authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&cfg.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("temporal claim mapper: %w", err)
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			// New search attributes become visible immediately rather than after a cache refresh.
			dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): []dynamicconfig.ConstrainedValue{{Value: true}},
			// A task that matching cannot hand to a waiting poller is appended to the store; past
			// 250 appends in flight per task queue it refuses the task. Refused speculative
			// workflow tasks (one per sync-now update) are only retried when their
			// schedule-to-start timeout fires, so a burst of updates for a fleet stalled for that
			// long. Appends are slow on SQLite, so the dev stack allows a deeper queue.
			dynamicconfig.MatchingOutstandingTaskAppendsThreshold.Key(): []dynamicconfig.ConstrainedValue{{Value: 20000}},
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("create temporal server: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("start temporal server: %w", err)
	}
	return &Temporal{server: srv, HostPort: frontendAddr, level: level}, nil
}

// Stop shuts the server down quietly: only fatal problems are logged while it stops.
func (t *Temporal) Stop() error {
	t.level.SetLevel(zapcore.FatalLevel)
	return t.server.Stop()
}

// servicePorts returns the ports of the server's internal services (membership, and the gRPC
// ports other than the frontend's): the ones this data directory used last time when they are
// all free, otherwise n new free ones, which are remembered for next time.
//
// Keeping them stable is what makes a restart fast. The single node's membership records in the
// SQLite store outlive it by their TTL; with new ports on every start, ringpop tried to join the
// previous run's addresses, gave up only after its 30 s maximum join duration, and until then
// history and matching answered "Not enough hosts": the first workflow update after a restart took
// about 45 s although /readyz said ready. With the same ports, the recorded addresses are its own.
func servicePorts(dataDir, ip string, n int) ([]int, error) {
	path := filepath.Join(dataDir, servicePortsFile)
	var saved []int
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &saved) == nil && len(saved) == n {
		// A server stopped a moment ago may still be letting go of its listeners.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if portsFree(ip, saved) {
				return saved, nil
			}
			if time.Now().After(deadline) {
				break
			}
		}
	}
	ports, err := freePorts(ip, n)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(ports)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("remember temporal service ports: %w", err)
	}
	return ports, nil
}

// servicePortsFile, in the data directory, holds the internal service ports of the last start.
const servicePortsFile = "temporal-ports.json"

// portsFree reports whether every port can be bound on ip right now.
func portsFree(ip string, ports []int) bool {
	for _, p := range ports {
		if p <= 0 || p > 65535 {
			return false
		}
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		_ = l.Close()
	}
	return true
}

// freePorts reserves n distinct free TCP ports on ip. They are released before the server binds
// them, which is a benign race on a developer machine.
func freePorts(ip string, n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	out := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("reserve port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// WaitReady polls until the frontend accepts connections or ctx ends.
func WaitReady(ctx context.Context, hostPort string) error {
	for {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", hostPort)
		if err == nil {
			return conn.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("temporal frontend %s not reachable: %w", hostPort, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
