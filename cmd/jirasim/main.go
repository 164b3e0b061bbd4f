// Command jirasim runs the Jira simulator as a standalone process, so that the dev stack, demos
// and benchmarks in other processes can talk to a Jira-shaped server and drive it through its
// /_sim/ control API. It prints the base URL and demo credentials on start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "jirasim:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:8089", "listen address")
	flavor := flag.String("flavor", "cloud", "cloud or datacenter")
	baseURL := flag.String("base-url", "", "site URL to advertise (default http://<listen address>)")
	projects := flag.Int("projects", 20, "projects to seed (0: none)")
	issues := flag.Int("issues", 2000, "issues to seed")
	securityShare := flag.Float64("security-share", 0.15, "share of seeded issues labelled security")
	recentShare := flag.Float64("resolved-recent-share", 0.2, "share of done issues resolved in the last 30 days")
	seed := flag.Int64("seed", 1, "random seed for data generation and faults")
	clientID := flag.String("client-id", "jirasim-client", "OAuth 3LO client id (Cloud)")
	clientSecret := flag.String("client-secret", "jirasim-secret", "OAuth 3LO client secret (Cloud)")
	controlToken := flag.String("control-token", "", "require this X-Sim-Control-Token on /_sim/ requests")
	searchLag := flag.Duration("search-lag", 0, "eventual-consistency lag of /search/jql and approximate-count (Cloud)")
	adminEmail := flag.String("email", "admin@example.com", "demo user email (Cloud API token / OAuth consent)")
	tokenTTL := flag.Duration("access-token-ttl", time.Hour, "OAuth access-token lifetime (expires_in)")
	leeway := flag.Duration("refresh-leeway", 10*time.Minute, "how long a rotated refresh token may be reused (0: never; any reuse revokes the grant)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var fl jirasim.Flavor
	switch *flavor {
	case "cloud":
		fl = jirasim.Cloud
	case "datacenter", "dc":
		fl = jirasim.DataCenter
	default:
		return fmt.Errorf("unknown -flavor %q (want cloud or datacenter)", *flavor)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	url := *baseURL
	if url == "" {
		url = "http://" + ln.Addr().String()
	}
	sim := jirasim.New(jirasim.Options{
		Flavor: fl, BaseURL: url, OAuthClientID: *clientID, OAuthClientSecret: *clientSecret,
		RandSeed: *seed, Logger: log, ControlToken: *controlToken, AccessTokenTTL: *tokenTTL, RefreshLeeway: refreshLeeway(*leeway),
	})
	defer func() { _ = sim.Close() }()
	sim.SetSearchLag(*searchLag)
	if *projects > 0 {
		stats, err := sim.Seed(*seed, jirasim.SeedSpec{Projects: *projects, Issues: *issues, SecurityShare: *securityShare, ResolvedRecentShare: *recentShare})
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		log.Info("seeded", slog.Int("projects", stats.Projects), slog.Int("issues", stats.Issues), slog.Duration("elapsed", stats.Elapsed))
	}

	fmt.Printf("jirasim %s listening\n  base URL:     %s\n", fl, url)
	if fl == jirasim.Cloud {
		fmt.Printf("  cloud id:     %s\n  3LO gateway:  %s\n", sim.CloudID(), sim.GatewayURL())
		fmt.Printf("  API token:    %s / %s   (Basic on %s/rest/api/3)\n", *adminEmail, sim.APIToken(*adminEmail), url)
		fmt.Printf("  OAuth client: %s / %s\n  authorize:    %s/authorize?audience=api.atlassian.com&client_id=%s&scope=read%%3Ajira-work%%20offline_access&redirect_uri=<callback>&state=<state>&response_type=code&prompt=consent\n",
			*clientID, *clientSecret, url, *clientID)
		fmt.Printf("  token:        POST %s/oauth/token\n", url)
	} else {
		admin := sim.AdminUser()
		fmt.Printf("  PAT:          %s   (Bearer, user %s, %s/rest/api/2)\n", sim.PAT(admin.Name), admin.Name, url)
		sim.SetPassword(admin.Name, "admin")
		fmt.Printf("  password:     %s / admin   (Basic)\n", admin.Name)
	}
	fmt.Printf("  control API:  %s/_sim/info\n", url)

	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// refreshLeeway maps the flag (0: none) to the simulator's option (negative: none; 0: default).
func refreshLeeway(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
