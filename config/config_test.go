package config

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func lookupFrom(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	c, err := LoadFrom(lookupFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	// The application logs in as its own role, the owner only runs migrations.
	if c.DatabaseURL != "postgres://jiraconnect_app@127.0.0.1:5432/jiraconnect?sslmode=disable" ||
		c.DatabaseOwnerURL != "postgres://postgres@127.0.0.1:5432/jiraconnect?sslmode=disable" || c.DatabaseAllowPrivilegedLogin {
		t.Errorf("database: %q %q %t", c.DatabaseURL, c.DatabaseOwnerURL, c.DatabaseAllowPrivilegedLogin)
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
		"DATABASE_URL":                    "mysql://x",
		"DATABASE_OWNER_URL":              "not a url",
		"DATABASE_ALLOW_PRIVILEGED_LOGIN": "yes please",
		"DATABASE_MAX_CONNS":              "0",
		"WORKER_WORKFLOW_CACHE_SIZE":      "-1",
		"TEMPORAL_ADDRESS":                "no-port",
		"API_ADDR":                        ":99999",
		"PUBLIC_URL":                      "ftp://x",
		"API_MAX_BODY_BYTES":              "12",
		"LOG_LEVEL":                       "loud",
		"LOG_FORMAT":                      "xml",
		"KMS_PROVIDER":                    "vault",
		"KEY_CACHE_TTL":                   "forever",
		"WEBHOOK_ALLOWED_CIDRS":           "10.0.0.0/33",
		"TRUSTED_PROXIES":                 "not-an-ip",
		"JIRA_AUTH_URL":                   "https://auth.example.com/?x=1",
		"JIRA_EGRESS_ALLOW":               "10.0.0.0/33",
		"SUPERVISOR_INTERVAL":             "1s",
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

// The egress allowance defaults to nothing (production), parses into the policy's list, and the
// Atlassian URLs must be destinations that policy allows, or start-up fails naming both variables.
func TestEgressAllowance(t *testing.T) {
	c, err := LoadFrom(lookupFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.JiraEgressAllow.String(); s != "" {
		t.Fatalf("default allowance %q, want none", s)
	}
	c, err = LoadFrom(lookupFrom(map[string]string{"JIRA_EGRESS_ALLOW": "10.20.0.0/16, jira.corp.example"}))
	if err != nil || c.JiraEgressAllow.String() != "10.20.0.0/16,jira.corp.example" {
		t.Fatalf("allowance: %v %v", c, err)
	}
	for _, name := range []string{"JIRA_AUTH_URL", "JIRA_API_URL"} {
		for _, value := range []string{"http://127.0.0.1:8090", "https://169.254.169.254", "http://auth.example.com", "https://2130706433"} {
			_, err := LoadFrom(lookupFrom(map[string]string{name: value}))
			if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "JIRA_EGRESS_ALLOW") {
				t.Errorf("%s=%s without an allowance: %v", name, value, err)
			}
		}
		if _, err := LoadFrom(lookupFrom(map[string]string{name: "http://127.0.0.1:8090", "JIRA_EGRESS_ALLOW": "127.0.0.0/8,::1/128"})); err != nil {
			t.Errorf("%s on an allowed loopback: %v", name, err)
		}
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
	for _, name := range []string{"DATABASE_URL", "DATABASE_OWNER_URL"} {
		_, err = LoadFrom(lookupFrom(map[string]string{name: "mysql://u:hunter2@h/db"}))
		if err == nil || !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("%s: database password echoed or variable not named: %v", name, err)
		}
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

func TestAPIKeyMaxTTL(t *testing.T) {
	for value, want := range map[string]time.Duration{"": 0, "0": 0, "2160h": 2160 * time.Hour, " 90m ": 90 * time.Minute} {
		c, err := LoadFrom(lookupFrom(map[string]string{"API_KEY_MAX_TTL": value}))
		require.NoError(t, err, value)
		assert.Equal(t, want, c.APIKeyMaxTTL, value)
	}
	for _, value := range []string{"forever", "30d", "-1h", "30s", "0s"} {
		_, err := LoadFrom(lookupFrom(map[string]string{"API_KEY_MAX_TTL": value}))
		require.Error(t, err, value)
		assert.Contains(t, err.Error(), "API_KEY_MAX_TTL", value)
	}
}
