package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

// Simulator is the Jira simulator served by the dev stack in demo mode.
type Simulator struct {
	*jirasim.Sim
	URL    string
	server *http.Server
}

// StartSimulator serves a seeded Cloud simulator on addr, so a newcomer sees real evidence,
// coverage and issue sync without any Atlassian credentials.
func StartSimulator(addr string, log *slog.Logger) (*Simulator, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("jira simulator: listen on %s: %w", addr, err)
	}
	url := "http://" + ln.Addr().String()
	sim := jirasim.New(jirasim.Options{Flavor: jirasim.Cloud, BaseURL: url, SiteName: "demo", RandSeed: 1, Logger: log})
	if _, err := sim.Seed(1, jirasim.SeedSpec{Projects: 12, Issues: 2500, SecurityShare: 0.2, ResolvedRecentShare: 0.3}); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("jira simulator: seed: %w", err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &Simulator{Sim: sim, URL: url, server: srv}, nil
}

// Stop shuts the simulator down.
func (s *Simulator) Stop() {
	_ = s.server.Close()
	_ = s.Sim.Close()
}

// Demo is what the demo created.
type Demo struct {
	OrgKey       string
	ConnectionID string
}

// SeedDemo creates, through the public API at apiBase, a demo connection to the simulator using
// the admin key of a demo organization. Going through the API (not the database) makes the demo
// exercise exactly what a user would.
func SeedDemo(ctx context.Context, apiBase, adminKey string, sim *Simulator) (Demo, error) {
	var conn struct {
		ID string `json:"id"`
	}
	err := apiCall(ctx, http.MethodPost, apiBase+"/v1/connections", adminKey, map[string]any{
		"kind": "cloud_token", "site_url": sim.URL, "email": "admin@example.com", "api_token": sim.APIToken("admin@example.com"),
	}, &conn)
	if err != nil {
		return Demo{}, fmt.Errorf("demo connection: %w", err)
	}
	return Demo{OrgKey: adminKey, ConnectionID: conn.ID}, nil
}

func apiCall(ctx context.Context, method, url, key string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return errors.New(method + " " + url + ": " + resp.Status + ": " + string(raw))
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}
