package config

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

func lookupFrom(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	c, err := LoadFrom(lookupFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != "postgres://postgres@127.0.0.1:5432/jiraconnect?sslmode=disable" || c.DatabaseOwnerURL != c.DatabaseURL {
		t.Errorf("database urls: %q %q", c.DatabaseURL, c.DatabaseOwnerURL)
	}
	if c.TaskQueue != "jira-connections" || c.TemporalAddress != "127.0.0.1:7233" || c.APIAddr != ":8080" {
		t.Errorf("temporal/api defaults: %+v", c)
	}
	if c.APIMaxBodyBytes != 1<<20 || c.KeyCacheTTL != 5*time.Minute || c.KMSProvider != "local" || c.LogLevel != slog.LevelInfo {
		t.Errorf("defaults: %+v", c)
	}
	if c.SupervisorInterval != 5*time.Minute {
		t.Errorf("supervisor interval %v, want 5m", c.SupervisorInterval)
	}
	if c.OAuthEnabled() {
		t.Error("OAuth enabled without a client id")
	}
	// Every documented variable is read: Vars has no duplicates and each default parses.
	seen := map[string]bool{}
	for _, v := range Vars() {
		if seen[v.Name] || v.Help == "" {
			t.Errorf("variable %s duplicated or undocumented", v.Name)
		}
		seen[v.Name] = true
	}
}

func TestBadValuesNameTheVariable(t *testing.T) {
	cases := map[string]string{
		"DATABASE_URL":               "mysql://x",
		"DATABASE_MAX_CONNS":         "0",
		"WORKER_WORKFLOW_CACHE_SIZE": "-1",
		"TEMPORAL_ADDRESS":           "no-port",
		"API_ADDR":                   ":99999",
		"PUBLIC_URL":                 "ftp://x",
		"API_MAX_BODY_BYTES":         "12",
		"LOG_LEVEL":                  "loud",
		"LOG_FORMAT":                 "xml",
		"KMS_PROVIDER":               "vault",
		"KEY_CACHE_TTL":              "forever",
		"WEBHOOK_ALLOWED_CIDRS":      "10.0.0.0/33",
		"TRUSTED_PROXIES":            "not-an-ip",
		"JIRA_AUTH_URL":              "https://auth.example.com/?x=1",
		"SUPERVISOR_INTERVAL":        "1s",
	}
	for name, value := range cases {
		_, err := LoadFrom(lookupFrom(map[string]string{name: value}))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: error %v does not name the variable", name, value, err)
		}
	}
	_, err := LoadFrom(lookupFrom(map[string]string{"KMS_PROVIDER": "aws"}))
	if err == nil || !strings.Contains(err.Error(), "KMS_KEY_ID") || !strings.Contains(err.Error(), "AWS_REGION") {
		t.Errorf("aws without key id and region: %v", err)
	}
	_, err = LoadFrom(lookupFrom(map[string]string{"JIRA_OAUTH_CLIENT_ID": "abc"}))
	if err == nil || !strings.Contains(err.Error(), "JIRA_OAUTH_CLIENT_SECRET") {
		t.Errorf("client id without secret: %v", err)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	const secret = "s3cr3t-client-secret-value"
	c, err := LoadFrom(lookupFrom(map[string]string{"JIRA_OAUTH_CLIENT_ID": "id", "JIRA_OAUTH_CLIENT_SECRET": secret}))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(c.JiraOAuthClientSecret)} {
		if strings.Contains(s, secret) {
			t.Fatalf("secret printed: %s", s)
		}
	}
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "secret", c.JiraOAuthClientSecret)
	if strings.Contains(buf.String(), secret) {
		t.Fatalf("secret logged: %s", buf.String())
	}
	if c.JiraOAuthClientSecret.Reveal() != secret {
		t.Fatal("Reveal does not return the secret")
	}
	// A database password in a bad URL is not echoed.
	_, err = LoadFrom(lookupFrom(map[string]string{"DATABASE_URL": "mysql://u:hunter2@h/db"}))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("database password echoed: %v", err)
	}
}

func TestParsePrefixes(t *testing.T) {
	ps, err := ParsePrefixes(" 10.0.0.0/8, 192.168.1.7 ,2001:db8::/32,")
	if err != nil || len(ps) != 3 || ps[1].Bits() != 32 || ps[0].String() != "10.0.0.0/8" {
		t.Fatalf("%v %v", ps, err)
	}
	if _, err := ParsePrefixes("10.0.0.1/8x"); err == nil {
		t.Fatal("accepted a bad CIDR")
	}
}

// The README's configuration table is generated from Vars; this keeps the two from drifting.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	for _, v := range Vars() {
		d := v.Default
		if d == "" {
			d = "(empty)"
		}
		row := fmt.Sprintf("| `%s` | `%s` |", v.Name, d)
		if !strings.Contains(readme, row) {
			t.Errorf("README.md lacks the row %q", row)
		}
	}
}
