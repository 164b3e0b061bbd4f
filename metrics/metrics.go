// Package metrics owns the Prometheus registry of a jiraconnect process and bridges the Temporal
// SDK's metrics into it, so /metrics shows both our own series and the SDK's (workflow task
// latency, activity failures, poller counts, …) from one endpoint.
package metrics

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// Metrics is one process's metric registry.
type Metrics struct {
	Registry *prometheus.Registry
	// Temporal receives the SDK's metrics; pass it as client.Options.MetricsHandler.
	Temporal client.MetricsHandler

	HTTPRequests *prometheus.CounterVec
	HTTPDuration *prometheus.HistogramVec

	scopeCloser io.Closer
}

// New builds a registry with Go runtime and process collectors, the HTTP series and the Temporal
// SDK bridge. Registration errors from the bridge are logged, not fatal: a metric name clash must
// never take a worker down.
func New(log *slog.Logger) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jiraconnect_http_requests_total",
			Help: "HTTP requests served, by route and status code.",
		}, []string{"method", "route", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jiraconnect_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.HTTPRequests, m.HTTPDuration)

	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer:       reg,
		DefaultTimerType: tallyprom.HistogramTimerType,
		OnRegisterError: func(err error) {
			log.Warn("temporal sdk metric not registered", "err", err)
		},
	})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &tallyprom.DefaultSanitizerOpts,
	}, time.Second)
	m.Temporal = sdktally.NewMetricsHandler(scope)
	m.scopeCloser = closer
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// Register adds collectors owned by other packages (e.g. alert counters).
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.Registry.Register(c); err != nil {
			return fmt.Errorf("register metric: %w", err)
		}
	}
	return nil
}

// Close flushes and stops the Temporal metrics scope.
func (m *Metrics) Close() error { return m.scopeCloser.Close() }
