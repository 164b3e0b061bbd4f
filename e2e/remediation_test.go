package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/evidence"
)

// defaultSyncCalls is the Jira calls of a sync with the default configuration, the same at every
// site size: project count, total and open counts and one resolved-ticket page (4), then the
// security remediation's resolved count, resolved-ticket page and oldest-open search (3) and one
// open-past-SLA count per default priority (5).
const defaultSyncCalls = 4 + 3 + 5

// The remediation settings go through the API like every other setting: validated field by field
// before anything is stored, shown on the connection, patched, audited with old and new values;
// the sync then records the remediation evidence the controls require.
func TestRemediationSettingsAndEvidence(t *testing.T) {
	s := newStack(t)
	key := s.org("remediation")
	token := s.cloud.APIToken("admin@example.com")
	create := func(cfg map[string]any) reply {
		return s.call("POST", "/v1/connections", key, map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL,
			"email": "admin@example.com", "api_token": token, "config": cfg})
	}

	for _, c := range []struct {
		remediation map[string]any
		field       string
	}{
		{map[string]any{"slas": map[string]any{"High": "30m"}}, "config.remediation.slas.High"},
		{map[string]any{"slas": map[string]any{"High": "a month"}}, "config.remediation.slas.High"},
		{map[string]any{"slas": map[string]any{}}, "config.remediation.slas"},
		{map[string]any{"window_days": 400}, "config.remediation.window_days"},
		{map[string]any{"jql": `labels = security ORDER BY created`}, "config.remediation.jql"},
		{map[string]any{"jql": `labels = a) OR (project = B`}, "config.remediation.jql"},
		{map[string]any{"sla": map[string]any{}}, "config.remediation.sla"},
	} {
		r := create(map[string]any{"remediation": c.remediation})
		assert.Equal(t, 400, r.status, "%v: %s", c.remediation, r.raw)
		assert.Equal(t, c.field, r.str("error", "field"), "%v: %s", c.remediation, r.raw)
	}
	require.Zero(t, s.count(`SELECT count(*) FROM connections c JOIN organizations o ON o.id = c.org_id WHERE o.name = 'remediation'`),
		"refused requests stored a connection")

	r := create(map[string]any{"remediation": map[string]any{"window_days": 60, "slas": map[string]any{"High": "720h", "Highest": "168h"}}})
	require.Equal(t, 201, r.status, r.raw)
	connID := r.str("id")
	s.waitSuccessfulSyncs(key, connID, 1)
	got := s.call("GET", "/v1/connections/"+connID, key, nil)
	rem, _ := got.body["config"].(map[string]any)["remediation"].(map[string]any)
	assert.Equal(t, map[string]any{"jql": `labels = "security"`, "window_days": float64(60),
		"slas": map[string]any{"High": "720h0m0s", "Highest": "168h0m0s"}}, rem)

	// A bad patch is refused whole and changes nothing; a good one replaces the SLAs.
	for body, field := range map[string]string{
		`{"remediation":{"slas":{"High":"720h","high":"24h"}}}`:  "remediation.slas.high",
		`{"remediation":{"window_days":90,"jql":""}}`:            "remediation.jql",
		`{"sample_size":10,"remediation":{"slas":{"Low":"1s"}}}`: "remediation.slas.Low",
	} {
		var v map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &v))
		r := s.call("PATCH", "/v1/connections/"+connID, key, v)
		assert.Equal(t, 400, r.status, "%s: %s", body, r.raw)
		assert.Equal(t, field, r.str("error", "field"), body)
	}
	unchanged := s.call("GET", "/v1/connections/"+connID, key, nil)
	assert.Equal(t, got.body["config"], unchanged.body["config"])

	r = s.call("PATCH", "/v1/connections/"+connID, key, map[string]any{"remediation": map[string]any{
		"jql": `labels = "security" AND project in (SEC, P0001)`, "slas": map[string]any{"Highest": "72h", "High": "336h", "Medium": "2160h"}}})
	require.Equal(t, 200, r.status, r.raw)
	rem, _ = r.body["config"].(map[string]any)["remediation"].(map[string]any)
	assert.Equal(t, map[string]any{"jql": `labels = "security" AND project in (SEC, P0001)`, "window_days": float64(60),
		"slas": map[string]any{"Highest": "72h0m0s", "High": "336h0m0s", "Medium": "2160h0m0s"}}, rem)
	var meta map[string]any
	require.NoError(t, testDB.Owner(t).QueryRow(context.Background(), `SELECT metadata FROM audit_log
		WHERE action = 'connection.configure' AND target_id = $1 ORDER BY id DESC LIMIT 1`, connID).Scan(&meta))
	oldRem, _ := meta["old"].(map[string]any)["remediation"].(map[string]any)
	newRem, _ := meta["new"].(map[string]any)["remediation"].(map[string]any)
	assert.Equal(t, `labels = "security"`, oldRem["jql"])
	assert.Equal(t, rem, newRem, "the audit row carries the new remediation settings")

	// A sync with the patched settings: 3 + 3 remediation calls, and the evidence.
	require.Equal(t, 202, s.call("POST", "/v1/connections/"+connID+"/sync", key, nil).status)
	s.eventually("a sync with the patched settings", 30*time.Second, func() bool {
		for _, run := range s.runs(key, connID) {
			if run["kind"] == "sync" && run["outcome"] == "success" && run["jira_calls"] == float64(4+3+3) {
				return true
			}
		}
		return false
	})
	var latest evidence.SecurityRemediation
	for _, e := range s.evidence(key, "type=jira.security_remediation&connection="+connID) {
		b, err := json.Marshal(e["payload"])
		require.NoError(t, err)
		var p evidence.SecurityRemediation
		require.NoError(t, json.Unmarshal(b, &p))
		if p.JQL == rem["jql"] {
			latest = p
		}
	}
	require.NotEmpty(t, latest.Priorities, "no remediation evidence with the patched settings")
	assert.EqualValues(t, 60*24*3600, latest.WindowSeconds)
	names := make([]string, 0, len(latest.Priorities))
	for _, p := range latest.Priorities {
		names = append(names, p.Priority)
	}
	assert.Equal(t, []string{"Highest", "High", "Medium"}, names, "shortest SLA first")
	assert.False(t, latest.Empty, "the seeded site has security tickets")

	// The vulnerability-management and incident-response controls require it and are covered.
	cov := s.call("GET", "/v1/coverage", key, nil)
	require.Equal(t, 200, cov.status, cov.raw)
	for _, c := range cov.body["controls"].([]any) {
		c := c.(map[string]any)
		switch c["control_id"] {
		case "iso27001-2022.a.8.8", "iso27001-2022.a.5.26", "soc2.cc7.4":
			var types []string
			for _, tc := range c["types"].([]any) {
				types = append(types, tc.(map[string]any)["type"].(string))
			}
			assert.Contains(t, types, "jira.security_remediation", c["control_id"])
			assert.Equal(t, "covered", c["state"], "%v: %v", c["control_id"], c["why"])
		}
	}
}
