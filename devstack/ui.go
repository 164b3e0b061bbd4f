package devstack

import (
	"fmt"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	"github.com/temporalio/ui-server/v2/server/server_options"
)

// UI is the embedded Temporal Web UI.
type UI struct {
	server *uiserver.Server
	URL    string
}

// StartUI serves the Temporal Web UI on ip:port against the given frontend.
func StartUI(ip string, port int, frontendHostPort, namespace string) (*UI, error) {
	cfg := &uiconfig.Config{
		TemporalGRPCAddress: frontendHostPort,
		Host:                ip,
		Port:                port,
		EnableUI:            true,
		DefaultNamespace:    namespace,
		HideLogs:            true,
		DisableNewsFetch:    true, // the UI must not call out to the internet
		CORS:                uiconfig.CORS{CookieInsecure: true},
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("temporal ui config: %w", err)
	}
	srv := uiserver.NewServer(server_options.WithConfigProvider(cfg))
	go func() { _ = srv.Start() }()
	return &UI{server: srv, URL: fmt.Sprintf("http://%s:%d", ip, port)}, nil
}

// Stop closes the UI server.
func (u *UI) Stop() { u.server.Stop() }
