// Package app assembles jiraconnect's processes from configuration: the API server and the
// Temporal worker. The production binary (cmd/jiraconnect) and the dev stack
// (cmd/jiraconnect-dev) share it, so both run exactly the same wiring; only the dev stack adds an
// embedded Temporal server.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/api"
	"github.com/jiraconnect/jiraconnect/config"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db"
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

// Core holds what every process needs: logger, metrics, database, sealing and the connection
// service (which owns the process-wide OAuth token sources).
type Core struct {
	Config      *config.Config
	Log         *slog.Logger
	Metrics     *metrics.Metrics
	DB          *db.DB
	Sealer      *seal.Sealer
	Tenancy     *tenancy.Service
	OAuth       *jira.OAuthApp
	Connections *connections.Service
	Activities  *activities.Activities
}

// NewCore opens the database and the key provider.
func NewCore(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Core, error) {
	d, err := db.Open(ctx, cfg.DatabaseURL, db.Options{AppRole: cfg.DatabaseAppRole, MaxConns: cfg.DatabaseMaxConns})
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
	var oauth *jira.OAuthApp
	if cfg.OAuthEnabled() {
		oauth = &jira.OAuthApp{
			ClientID:     cfg.JiraOAuthClientID,
			ClientSecret: jira.NewSecret(cfg.JiraOAuthClientSecret.Reveal()),
			RedirectURL:  cfg.PublicURL.String() + OAuthCallbackPath,
			AuthBaseURL:  cfg.JiraAuthURL.String(),
			APIBaseURL:   cfg.JiraAPIURL.String(),
			Logger:       log,
		}
	}
	m := metrics.New(log)
	conns := &connections.Service{DB: d, Sealer: sealer, OAuth: oauth, Log: log}
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
		Tenancy:     &tenancy.Service{DB: d, Sealer: sealer},
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

// NewAPI builds the HTTP API.
func (c *Core) NewAPI(tc client.Client) *api.Server {
	var temporalPing api.Pinger
	if tc != nil {
		temporalPing = api.PingFunc(func(ctx context.Context) error {
			_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		})
	}
	return api.New(api.Deps{
		Log:            c.Log,
		DB:             c.DB,
		Tenancy:        c.Tenancy,
		Metrics:        c.Metrics,
		Sealer:         c.Sealer,
		Connections:    c.Connections,
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

// RunAPI serves the API until ctx ends.
func (c *Core) RunAPI(ctx context.Context, tc client.Client) error {
	srv := c.NewAPI(tc)
	c.Log.Info("api listening", "addr", c.Config.APIAddr)
	if err := srv.Serve(ctx, c.Config.APIAddr); err != nil {
		return fmt.Errorf("api server: %w", err)
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
		if _, err := tc.CheckHealth(rctx, &client.CheckHealthRequest{}); err != nil {
			return ec.JSON(http.StatusServiceUnavailable, map[string]string{"temporal": "unreachable"})
		}
		return ec.JSON(http.StatusOK, map[string]string{"postgres": "ok", "temporal": "ok"})
	})
	e.GET("/metrics", echo.WrapHandler(c.Metrics.Handler()))
	srv := &http.Server{Addr: c.Config.WorkerAddr, Handler: e, ReadHeaderTimeout: 10 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("worker ops server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}
