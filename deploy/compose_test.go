// Package deploy checks the deployment files shipped for users (docker-compose.yml, Dockerfile),
// which cannot be run on machines without a Docker engine.
package deploy

import (
	"net/url"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/jiraconnect/jiraconnect/config"
)

type compose struct {
	Services map[string]struct {
		Image       string         `yaml:"image"`
		Build       any            `yaml:"build"`
		Command     []string       `yaml:"command"`
		Environment map[string]any `yaml:"environment"`
		Ports       []string       `yaml:"ports"`
		Volumes     []string       `yaml:"volumes"`
		DependsOn   map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
	} `yaml:"services"`
}

func TestComposeWiring(t *testing.T) {
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"postgres", "temporal", "temporal-ui", "migrate", "api", "worker"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("service %s missing", name)
		}
	}
	known := map[string]bool{}
	for _, v := range config.Vars() {
		known[v.Name] = true
	}
	for _, name := range []string{"migrate", "api", "worker"} {
		s := c.Services[name]
		if s.Command[0] != name {
			t.Errorf("%s runs %v", name, s.Command)
		}
		for k := range s.Environment {
			if !known[k] {
				t.Errorf("%s sets %s, which jiraconnect does not read", name, k)
			}
		}
		dbURL, _ := s.Environment["DATABASE_URL"].(string)
		u, err := url.Parse(dbURL)
		if err != nil || u.Hostname() != "postgres" {
			t.Errorf("%s DATABASE_URL %q does not point at the postgres service", name, dbURL)
		} else if u.User.Username() != "jiraconnect_app" {
			t.Errorf("%s logs in as %q, want the application role jiraconnect_app", name, u.User.Username())
		}
		_, hasOwner := s.Environment["DATABASE_OWNER_URL"]
		if hasOwner != (name == "migrate") {
			t.Errorf("%s: DATABASE_OWNER_URL set=%t; only the migrate job may know the owner's login", name, hasOwner)
		}
		if s.Environment["TEMPORAL_ADDRESS"] != "temporal:7233" {
			t.Errorf("%s TEMPORAL_ADDRESS = %v", name, s.Environment["TEMPORAL_ADDRESS"])
		}
		if s.Environment["TEMPORAL_TASK_QUEUE"] != "jira-connections" {
			t.Errorf("%s task queue = %v", name, s.Environment["TEMPORAL_TASK_QUEUE"])
		}
		if name != "migrate" {
			if s.DependsOn["migrate"].Condition != "service_completed_successfully" || s.DependsOn["temporal"].Condition != "service_healthy" {
				t.Errorf("%s does not wait for migrations and a healthy temporal: %+v", name, s.DependsOn)
			}
		}
	}
	if !hasPort(c.Services["api"].Ports, "8080") || !hasPort(c.Services["temporal-ui"].Ports, "8233") {
		t.Error("api must publish 8080 and the temporal ui 8233")
	}
	if c.Services["temporal-ui"].Environment["TEMPORAL_ADDRESS"] != "temporal:7233" {
		t.Error("temporal ui does not point at the temporal service")
	}
	checkDatabaseRoles(t, c)
	if c.Services["migrate"].Build == nil {
		t.Error("the jiraconnect image is never built")
	}
	docker, err := os.ReadFile("../Dockerfile")
	if err != nil || !strings.Contains(string(docker), "./cmd/jiraconnect") || strings.Contains(string(docker), "jiraconnect-dev") {
		t.Errorf("Dockerfile must build the production binary only: %v", err)
	}
}

func hasPort(ports []string, p string) bool {
	for _, x := range ports {
		if strings.HasPrefix(x, p+":") {
			return true
		}
	}
	return false
}

// checkDatabaseRoles: Postgres creates the two roles on first start (deploy/postgres-roles.sql),
// the application role without any privilege that could bypass row-level security, and the
// URLs log in with the passwords given there.
func checkDatabaseRoles(t *testing.T, c compose) {
	t.Helper()
	const script = "./deploy/postgres-roles.sql"
	mounted := false
	for _, v := range c.Services["postgres"].Volumes {
		mounted = mounted || strings.HasPrefix(v, script+":/docker-entrypoint-initdb.d/")
	}
	if !mounted {
		t.Errorf("the postgres service does not run %s at initialisation", script)
	}
	raw, err := os.ReadFile("postgres-roles.sql")
	if err != nil {
		t.Fatal(err)
	}
	sql := strings.Join(strings.Fields(string(raw)), " ")
	for _, want := range []string{
		"CREATE ROLE jiraconnect_app LOGIN PASSWORD 'jiraconnect_app' NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION;",
		"CREATE ROLE jiraconnect_owner LOGIN PASSWORD 'jiraconnect_owner' NOSUPERUSER NOBYPASSRLS",
		"ALTER DATABASE jiraconnect OWNER TO jiraconnect_owner;",
	} {
		if !strings.Contains(sql, want) {
			t.Errorf("%s lacks %q", script, want)
		}
	}
	for name, role := range map[string]string{"DATABASE_URL": "jiraconnect_app", "DATABASE_OWNER_URL": "jiraconnect_owner"} {
		raw, _ := c.Services["migrate"].Environment[name].(string)
		u, err := url.Parse(raw)
		if err != nil {
			t.Errorf("migrate %s: %v", name, err)
			continue
		}
		if pw, _ := u.User.Password(); u.User.Username() != role || pw != role {
			t.Errorf("migrate %s logs in as %q, want %s with the password of %s", name, u.User.Username(), role, script)
		}
	}
}
