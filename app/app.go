// Package app assembles jiraconnect's processes from configuration: the API server and the
// Temporal worker. The production binary (cmd/jiraconnect) and the dev stack
// (cmd/jiraconnect-dev) share it, so both run exactly the same wiring; only the dev stack adds an
// embedded Temporal server.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/api"
	"github.com/jiraconnect/jiraconnect/config"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/metrics"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
	"github.com/jiraconnect/jiraconnect/worker"
	"github.com/jiraconnect/jiraconnect/workflowclient"
)

// Version is the connector version, recorded in evidence provenance; set at build time with
// -ldflags "-X github.com/jiraconnect/jiraconnect/app.Version=…".
var Version = "dev"

// Core holds what every process needs: logger, metrics, database, sealing, the egress policy and
// the connection service (which owns the process-wide OAuth token sources).
type Core struct {
	Config  *config.Config
	Log     *slog.Logger
	Metrics *metrics.Metrics
	DB      *db.DB
	Sealer  *seal.Sealer
	Tenancy *tenancy.Service
	// Egress is the policy every Jira and Atlassian call goes through (JIRA_EGRESS_ALLOW): the
	// connections' client, the API's credential checks and the OAuth app all use its client.
	Egress      *egress.Policy
	OAuth       *jira.OAuthApp
	Connections *connections.Service
	Activities  *activities.Activities
}

// Option adjusts how NewCore assembles a process; production passes none.
type Option func(*coreOptions)

type coreOptions struct {
	egress egress.Options
}

// WithEgressOptions sets the egress policy's resolver and trusted certificate authorities, so
// tests can make a site's name resolve anywhere (DNS rebinding) or serve it over TLS. The allow
// list always comes from the configuration.
func WithEgressOptions(o egress.Options) Option {
	return func(c *coreOptions) { c.egress = o }
}

// NewCore opens the database (logged in as the application role: db.Open refuses a privileged
// login), the key provider and the egress policy every outbound Jira call passes.
func NewCore(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*Core, error) {
	var o coreOptions
	for _, opt := range opts {
		opt(&o)
	}
	d, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: cfg.DatabaseMaxConns,
		AllowPrivilegedLogin: cfg.DatabaseAllowPrivilegedLogin, Logger: log})
	if err != nil {
		return nil, err
	}
	provider, err := NewKeyProvider(ctx, cfg)
	if err != nil {
		d.Close()
		return nil, err
	}
	sealer, err := seal.New(provider, tenancy.KeyStore{DB: d}, seal.Options{CacheTTL: cfg.KeyCacheTTL, Logger: log})
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("sealer: %w", err)
	}
	// One policy, one client: tenants' sites, the OAuth token endpoint and the gateway are all
	// reached through the same dial-time check.
	policy := egress.New(cfg.JiraEgressAllow, o.egress)
	var oauth *jira.OAuthApp
	if cfg.OAuthEnabled() {
		oauth = &jira.OAuthApp{
			ClientID:     cfg.JiraOAuthClientID,
			ClientSecret: jira.NewSecret(cfg.JiraOAuthClientSecret.Reveal()),
			RedirectURL:  cfg.PublicURL.String() + OAuthCallbackPath,
			AuthBaseURL:  cfg.JiraAuthURL.String(),
			APIBaseURL:   cfg.JiraAPIURL.String(),
			HTTPClient:   policy.HTTPClient(),
			Logger:       log,
		}
	}
	m := metrics.New(log)
	conns := &connections.Service{DB: d, Sealer: sealer, OAuth: oauth, HTTPClient: policy.HTTPClient(), Log: log}
	acts, err := activities.New(activities.Deps{DB: d, Connections: conns, Log: log, Version: Version, Registerer: m.Registry,
		PublicURL: cfg.PublicURL.String()})
	if err != nil {
		d.Close()
		return nil, err
	}
	return &Core{
		Config:      cfg,
		Log:         log,
		Metrics:     m,
		DB:          d,
		Sealer:      sealer,
		Tenancy:     &tenancy.Service{DB: d, Sealer: sealer, MaxKeyTTL: cfg.APIKeyMaxTTL},
		Egress:      policy,
		OAuth:       oauth,
		Connections: conns,
		Activities:  acts,
	}, nil
}

// OAuthCallbackPath is where Atlassian sends the consenting browser back (registered as the
// app's callback URL: PUBLIC_URL + this path).
const OAuthCallbackPath = "/api/integrations/jira/callback"

// Close releases the core's resources.
func (c *Core) Close() {
	c.DB.Close()
	if err := c.Metrics.Close(); err != nil {
		c.Log.Warn("close metrics", "err", err)
	}
}

// NewKeyProvider builds the KMS or local-keyring key provider named by KMS_PROVIDER.
func NewKeyProvider(ctx context.Context, cfg *config.Config) (seal.KeyProvider, error) {
	switch cfg.KMSProvider {
	case "aws":
		p, err := seal.NewKMSProvider(ctx, seal.KMSConfig{KeyID: cfg.KMSKeyID, Region: cfg.AWSRegion, Endpoint: cfg.KMSEndpoint})
		if err != nil {
			return nil, fmt.Errorf("KMS_PROVIDER=aws: %w", err)
		}
		return p, nil
	case "local":
		p, err := seal.OpenLocalKeyring(cfg.LocalKeyringDir)
		if err != nil {
			return nil, fmt.Errorf("KMS_PROVIDER=local: %w", err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("KMS_PROVIDER=%q: must be aws or local", cfg.KMSProvider)
}

// DialTemporal connects the Temporal client with the core's logger and metrics.
func (c *Core) DialTemporal(ctx context.Context) (client.Client, error) {
	return worker.Dial(ctx, worker.ClientOptions{
		HostPort: c.Config.TemporalAddress, Namespace: c.Config.TemporalNamespace, Logger: c.Log, Metrics: c.Metrics.Temporal,
	})
}

// TemporalReady reports whether this process can do its work through Temporal: the frontend
// answers, and the namespace's task queue is served (DescribeTaskQueue goes through matching,
// which every workflow start, update and task needs). A frontend that answers health checks while
// the rest of the cluster is still joining is not ready.
func (c *Core) TemporalReady(tc client.Client) api.PingFunc {
	return func(ctx context.Context) error {
		if _, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			return fmt.Errorf("temporal frontend: %w", err)
		}
		if _, err := tc.DescribeTaskQueue(ctx, c.Config.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW); err != nil {
			return fmt.Errorf("temporal task queue %s in namespace %s: %w", c.Config.TaskQueue, c.Config.TemporalNamespace, err)
		}
		return nil
	}
}

// NewAPI builds the HTTP API.
func (c *Core) NewAPI(tc client.Client) *api.Server {
	var temporalPing api.Pinger
	if tc != nil {
		temporalPing = c.TemporalReady(tc)
	}
	return api.New(api.Deps{
		Log:            c.Log,
		DB:             c.DB,
		Tenancy:        c.Tenancy,
		Metrics:        c.Metrics,
		Sealer:         c.Sealer,
		Connections:    c.Connections,
		Egress:         c.Egress,
		Revoker:        c.Activities,
		Temporal:       tc,
		TaskQueue:      c.Config.TaskQueue,
		TemporalHealth: temporalPing,
		OAuth:          c.OAuth,
		TrustedProxies: c.Config.TrustedProxies,
		PublicURL:      c.Config.PublicURL.String(),

		ReconcileInterval: c.Config.FindingReconcileInterval,

		WebhookAllowedCIDRs: c.Config.WebhookAllowedCIDRs,
		MaxBodyBytes:        c.Config.APIMaxBodyBytes,
		Version:             Version,
	})
}

// RunAPI serves the API on API_ADDR and its operator endpoints on OPS_ADDR until ctx ends.
func (c *Core) RunAPI(ctx context.Context, tc client.Client) error {
	srv := c.NewAPI(tc)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		c.Log.Info("api listening", "addr", c.Config.APIAddr)
		if err := srv.Serve(gctx, c.Config.APIAddr); err != nil {
			return fmt.Errorf("api server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		c.Log.Info("api ops listening", "addr", c.Config.OpsAddr)
		return serveOps(gctx, "api ops server", c.Config.OpsAddr, srv.OpsHandler())
	})
	return g.Wait()
}

// serveOps serves an operator handler on addr until ctx ends.
func serveOps(ctx context.Context, name, addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s on %s: %w", name, addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// RunWorker runs the Temporal worker and its small operations server (/healthz, /readyz,
// /metrics) until ctx ends.
func (c *Core) RunWorker(ctx context.Context, tc client.Client) error {
	if err := worker.EnsureSearchAttributes(ctx, tc, c.Config.TemporalNamespace); err != nil {
		// Not fatal: workflows still run; only UI filtering by these attributes is affected.
		c.Log.Warn("search attributes not registered", "err", err)
	}
	if err := worker.EnsureRetentionSchedule(ctx, tc, c.Config.TaskQueue, c.Config.EvidenceRetention); err != nil {
		c.Log.Warn("evidence retention schedule not created", "err", err)
	}
	if err := worker.EnsureSupervisorSchedule(ctx, tc, c.Config.TaskQueue, c.Config.SupervisorInterval); err != nil {
		c.Log.Warn("connection supervisor schedule not created", "err", err)
	}
	if err := worker.EnsureKeyRotationSchedule(ctx, tc, c.Config.TaskQueue, c.Config.DataKeyRotationPeriod); err != nil {
		c.Log.Warn("data key rotation schedule not created", "err", err)
	}
	worker.SetWorkflowCacheSize(c.Config.WorkerWorkflowCacheSize)
	// The supervisor starts lost connection workflows with the starter the API uses.
	acts := c.Activities.WithWorkflows(workflowclient.New(tc, c.Config.TaskQueue, c.Config.FindingReconcileInterval))
	w := worker.New(tc, c.Config.TaskQueue, acts)
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker on task queue %s: %w", c.Config.TaskQueue, err)
	}
	defer w.Stop()
	c.Log.Info("worker polling", "task_queue", c.Config.TaskQueue, "namespace", c.Config.TemporalNamespace)

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/healthz", func(ec echo.Context) error { return ec.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", func(ec echo.Context) error {
		rctx, cancel := context.WithTimeout(ec.Request().Context(), 3*time.Second)
		defer cancel()
		if err := c.DB.Ping(rctx); err != nil {
			return ec.JSON(http.StatusServiceUnavailable, map[string]string{"postgres": "unreachable"})
		}
		if err := c.TemporalReady(tc)(rctx); err != nil {
			c.Log.WarnContext(rctx, "readiness check failed", "dependency", "temporal", "err", err)
			return ec.JSON(http.StatusServiceUnavailable, map[string]string{"temporal": "unreachable"})
		}
		return ec.JSON(http.StatusOK, map[string]string{"postgres": "ok", "temporal": "ok"})
	})
	e.GET("/metrics", echo.WrapHandler(c.Metrics.Handler()))
	return serveOps(ctx, "worker ops server", c.Config.WorkerAddr, e)
}
