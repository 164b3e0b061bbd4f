// Package api is jiraconnect's HTTP API (echo): the tenants' REST API under /v1, the probes
// (/healthz, /readyz), the OAuth callback and the webhook bridge on the public listener, and the
// operator endpoints (the same probes and /metrics) on a separate handler for the ops listener.
//
// Every /v1 request is authenticated by a bearer API key, runs its database work in a transaction
// scoped to the key's organization (row-level security), and answers errors as JSON.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.temporal.io/sdk/client"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/metrics"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
	"github.com/jiraconnect/jiraconnect/workflowclient"
)

// Pinger is anything /readyz must be able to reach.
type Pinger interface {
	Ping(ctx context.Context) error
}

// PingFunc adapts a function to Pinger.
type PingFunc func(ctx context.Context) error

// Ping implements Pinger.
func (f PingFunc) Ping(ctx context.Context) error { return f(ctx) }

// Revoker runs the revoke cleanup directly when a connection has no running workflow to do it
// (activities.Activities implements it).
type Revoker interface {
	RevokeCleanup(ctx context.Context, in activities.RevokeInput) error
}

// revokeCleanup adapts a Revoker to the connection use cases' view of it (connections.Revoker).
type revokeCleanup struct{ r Revoker }

func (rc revokeCleanup) RevokeCleanup(ctx context.Context, orgID, connID uuid.UUID, by audit.Actor) error {
	return rc.r.RevokeCleanup(ctx, activities.RevokeInput{
		ConnectionRef: activities.ConnectionRef{OrgID: orgID, ConnectionID: connID},
		ActorType:     string(by.Type), ActorID: by.ID,
	})
}

// Deps are the API's collaborators.
type Deps struct {
	Log         *slog.Logger
	DB          *db.DB
	Tenancy     *tenancy.Service
	Metrics     *metrics.Metrics
	Sealer      *seal.Sealer
	Connections *connections.Service
	// Egress is the operator's egress policy, which site URLs are checked against before anything
	// is stored or called (the calls themselves go through Connections' guarded client). Nil means
	// the production default: public addresses over https only.
	Egress  *egress.Policy
	Revoker Revoker
	// Temporal starts, signals and updates connection workflows.
	Temporal  client.Client
	TaskQueue string
	// TemporalHealth is pinged by /readyz.
	TemporalHealth Pinger
	// OAuth is the Atlassian OAuth app; nil when OAuth is not configured.
	OAuth *jira.OAuthApp
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// WebhookAllowedCIDRs restricts webhook sources (empty: any).
	WebhookAllowedCIDRs []netip.Prefix
	// WebhookMaxBytes caps webhook bodies (DefaultWebhookMaxBytes when zero).
	WebhookMaxBytes int64
	// PublicURL is the externally reachable base URL (webhook and OAuth callback URLs).
	PublicURL string
	// ReconcileInterval is given to new connection workflows (0: the workflow's default).
	ReconcileInterval time.Duration
	// MaxBodyBytes caps request bodies (413 beyond).
	MaxBodyBytes int64
	Version      string
}

// Server is the HTTP API.
type Server struct {
	e       *echo.Echo
	log     *slog.Logger
	deps    Deps
	maxBody int64
	// nudges rings connection workflows' doorbells after webhook deliveries are stored.
	nudges *nudger
	// workflows reaches connection workflows (started exactly as the supervisor starts them).
	workflows *workflowclient.Client
	// conns carries out the connection use cases.
	conns *connections.Manager
	// keyRotator rotates an organization's data key and starts its re-seal.
	keyRotator *tenancy.KeyRotator
}

// New wires routes and middleware.
func New(deps Deps) *Server {
	if deps.MaxBodyBytes <= 0 {
		deps.MaxBodyBytes = 1 << 20
	}
	if deps.Egress == nil {
		deps.Egress = egress.New(egress.AllowList{}, egress.Options{})
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	s := &Server{e: e, log: deps.Log, deps: deps, maxBody: deps.MaxBodyBytes,
		workflows: workflowclient.New(deps.Temporal, deps.TaskQueue, deps.ReconcileInterval)}
	s.conns = &connections.Manager{DB: deps.DB, Sealer: deps.Sealer, Connections: deps.Connections, Egress: deps.Egress,
		OAuth: deps.OAuth, Workflows: s.workflows, Revoker: revokeCleanup{deps.Revoker}, Log: deps.Log}
	s.keyRotator = &tenancy.KeyRotator{Keys: deps.Tenancy, Reseals: s.workflows, Log: deps.Log}
	var signal func(ctx context.Context, connID uuid.UUID) error
	if deps.Temporal != nil {
		signal = s.workflows.NudgeInbox
	}
	s.nudges = newNudger(signal, deps.Log)
	e.HTTPErrorHandler = s.handleError
	// The router must not guess at client IPs from headers; the webhook bridge does its own
	// trusted-proxy handling.
	e.IPExtractor = echo.ExtractIPDirect()

	e.Use(middleware.RequestIDWithConfig(middleware.RequestIDConfig{}))
	e.Use(s.recoverMiddleware)
	e.Use(s.observe)
	e.Use(s.bodyLimit)

	// Load balancers probe the public listener; metrics are for operators only (OpsHandler).
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	// The OpenAPI document and its rendering (/openapi.json, /openapi.yaml, /docs): public.
	s.routeDocs(e)

	v1 := e.Group("/v1", s.authenticate)
	v1.GET("/orgs/me", s.getOrgMe, requireRole(tenancy.RoleAuditor))
	v1.GET("/orgs/me/keys", s.listDataKeys, requireRole(tenancy.RoleAuditor))
	v1.POST("/orgs/me/keys/rotate", s.rotateDataKey, requireRole(tenancy.RoleAdmin))
	v1.GET("/api-keys", s.listAPIKeys, requireRole(tenancy.RoleAdmin))
	v1.POST("/api-keys", s.createAPIKey, requireRole(tenancy.RoleAdmin))
	v1.DELETE("/api-keys/:id", s.revokeAPIKey, requireRole(tenancy.RoleAdmin))
	v1.GET("/audit-log", s.listAuditLog, requireRole(tenancy.RoleAuditor))

	admin, member, auditor := requireRole(tenancy.RoleAdmin), requireRole(tenancy.RoleMember), requireRole(tenancy.RoleAuditor)
	v1.POST("/connections", s.createConnection, admin)
	v1.GET("/connections", s.listConnections, auditor)
	v1.GET("/connections/:id", s.getConnection, auditor)
	v1.PATCH("/connections/:id", s.patchConnection, admin)
	v1.DELETE("/connections/:id", s.revokeConnection, admin)
	v1.POST("/connections/:id/sync", s.syncNow, member)
	v1.POST("/connections/:id/test", s.testConnection, member)
	v1.POST("/connections/:id/reauth", s.reauth, admin)
	v1.GET("/connections/:id/runs", s.listRuns, auditor)
	v1.POST("/connections/:id/webhook-secret", s.rotateWebhookSecret, admin)
	v1.PUT("/connections/:id/finding-sync", s.putFindingSync, admin)
	v1.POST("/findings", s.upsertFinding, member)
	v1.GET("/findings", s.listFindings, auditor)
	v1.GET("/findings/:id", s.getFinding, auditor)
	v1.PATCH("/findings/:id", s.patchFinding, member)
	v1.GET("/evidence", s.listEvidence, auditor)
	v1.GET("/controls", s.listControls, auditor)
	v1.GET("/coverage", s.coverage, auditor)
	v1.GET("/alerts", s.listAlerts, auditor)
	v1.POST("/assessments", s.createAssessment, member)
	v1.GET("/assessments/:id", s.getAssessment, auditor)
	v1.POST("/assessments/:id/evidence", s.attachEvidence, member)
	v1.POST("/assessments/:id/approve", s.approveAssessment, admin)

	// Atlassian redirects the consenting user's browser here: no API key, the state authenticates.
	e.GET("/api/integrations/jira/callback", s.oauthCallback)
	// Jira delivers issue changes here; the URL secret, source address and signature authenticate.
	e.POST("/webhooks/jira/:connection/:secret", s.jiraWebhook)
	return s
}

// Handler exposes the API as an http.Handler (tests mount it on httptest).
func (s *Server) Handler() http.Handler { return s.e }

// OpsHandler serves the operator endpoints (/healthz, /readyz, /metrics) for the operator listener
// (OPS_ADDR), which is not the public one: metrics name routes, queues and error rates that are
// nobody's business outside the deployment, and the public listener also serves webhooks.
func (s *Server) OpsHandler() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	if s.deps.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(s.deps.Metrics.Handler()))
	}
	return e
}

// Echo exposes the router so later features (connections, findings, webhooks) can add routes.
func (s *Server) Echo() *echo.Echo { return s.e }

// Close stops what the server runs in the background: webhook inbox nudges in flight are
// cancelled (their deliveries are stored; workflows find them with their next inbox check) and no
// new ones are sent. Serve calls it when its context ends; callers that only use Handler call it
// themselves.
func (s *Server) Close() { s.nudges.close() }

// Serve listens on addr until ctx is cancelled, then drains in-flight requests. Webhook inbox
// nudges in flight are cancelled with ctx.
func (s *Server) Serve(ctx context.Context, addr string) error {
	srv := &http.Server{
		Addr:              addr,
		Handler:           s.e,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	defer s.Close()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.Close()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func requestID(c echo.Context) string {
	return c.Response().Header().Get(echo.HeaderXRequestID)
}

// recoverMiddleware turns a panic into a logged 500 rather than a dropped connection.
func (s *Server) recoverMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				s.log.ErrorContext(c.Request().Context(), "panic in handler", "path", c.Path(), "request_id", requestID(c), "panic", r)
				err = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
			}
		}()
		return next(c)
	}
}

// observe logs each request (never its headers or body) and records metrics by route template,
// so ids in paths do not explode metric cardinality.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		elapsed := time.Since(start)
		if m := s.deps.Metrics; m != nil {
			m.HTTPRequests.WithLabelValues(c.Request().Method, route, strconv.Itoa(status)).Inc()
			m.HTTPDuration.WithLabelValues(c.Request().Method, route).Observe(elapsed.Seconds())
		}
		if route != "/healthz" && route != "/metrics" {
			s.log.InfoContext(c.Request().Context(), "http request", "method", c.Request().Method, "route", route,
				"status", status, "duration_ms", elapsed.Milliseconds(), "request_id", requestID(c))
		}
		return nil
	}
}

// bodyLimit rejects bodies whose declared length is over the cap before reading them; bodies of
// unknown length are capped while decoding (decodeJSON).
func (s *Server) bodyLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Request().ContentLength > s.maxBody {
			return errTooLarge(s.maxBody)
		}
		return next(c)
	}
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok", "version": s.deps.Version})
}

// readyz reports whether the dependencies the API needs answer within a short deadline.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
	defer cancel()
	checks := map[string]string{}
	ready := true
	check := func(name string, p Pinger) {
		if p == nil {
			checks[name] = "not configured"
			ready = false
			return
		}
		if err := p.Ping(ctx); err != nil {
			s.log.WarnContext(ctx, "readiness check failed", "dependency", name, "err", err)
			checks[name] = "unreachable"
			ready = false
			return
		}
		checks[name] = "ok"
	}
	if s.deps.DB != nil {
		check("postgres", s.deps.DB)
	} else {
		check("postgres", nil)
	}
	check("temporal", s.deps.TemporalHealth)
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, map[string]any{"ready": ready, "checks": checks})
}
