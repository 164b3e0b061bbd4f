package connections_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/strictjson"
)

const day = 24 * time.Hour

func TestRemediationDefaults(t *testing.T) {
	t.Parallel()
	c := connections.DefaultConfig()
	require.NoError(t, c.Validate())
	r := c.Remediation
	assert.Equal(t, `labels = "security"`, r.JQL)
	assert.Equal(t, 90, r.WindowDays)
	assert.Equal(t, 90*day, r.Window())
	assert.Equal(t, map[string]connections.Duration{
		"Highest": connections.Duration(7 * day), "High": connections.Duration(30 * day), "Medium": connections.Duration(90 * day),
		"Low": connections.Duration(180 * day), "Lowest": connections.Duration(365 * day),
	}, r.SLAs)
	assert.Equal(t, []string{"Highest", "High", "Medium", "Low", "Lowest"}, r.Priorities(), "shortest SLA first")

	// Each call returns its own map.
	a, b := connections.DefaultConfig(), connections.DefaultConfig()
	a.Remediation.SLAs["High"] = connections.Duration(time.Hour)
	assert.Equal(t, connections.Duration(30*day), b.Remediation.SLAs["High"])
}

// Configurations stored before remediation existed keep working with the defaults, and a stored
// SLA map is taken as it is: decoding must not merge it into the default priorities.
func TestParseConfigRemediation(t *testing.T) {
	t.Parallel()
	old, err := connections.ParseConfig([]byte(`{"sync_cadence":"24h0m0s","stale_threshold":"48h0m0s","resolved_jql":"labels = x","sample_size":25}`))
	require.NoError(t, err)
	assert.Equal(t, connections.DefaultRemediationConfig(), old.Remediation)
	require.NoError(t, old.Validate())

	stored, err := connections.ParseConfig([]byte(`{"sync_cadence":"24h0m0s","stale_threshold":"48h0m0s","resolved_jql":"labels = x","sample_size":25,
		"remediation":{"jql":"project = SEC","window_days":30,"slas":{"Critical":"24h0m0s"}}}`))
	require.NoError(t, err)
	assert.Equal(t, connections.RemediationConfig{JQL: "project = SEC", WindowDays: 30,
		SLAs: map[string]connections.Duration{"Critical": connections.Duration(24 * time.Hour)}}, stored.Remediation)

	// What is stored is read back unchanged.
	raw, err := json.Marshal(stored)
	require.NoError(t, err)
	again, err := connections.ParseConfig(raw)
	require.NoError(t, err)
	assert.Equal(t, stored, again)
}

func TestRemediationValidation(t *testing.T) {
	t.Parallel()
	sla := func(d time.Duration) connections.Duration { return connections.Duration(d) }
	slas := func(n int) map[string]connections.Duration {
		m := map[string]connections.Duration{}
		for i := range n {
			m[strings.Repeat("P", i+1)] = sla(day)
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		edit  func(r *connections.RemediationConfig)
		field string
		says  string
	}{
		{"empty jql", func(r *connections.RemediationConfig) { r.JQL = "  " }, "remediation.jql", "must not be empty"},
		{"long jql", func(r *connections.RemediationConfig) { r.JQL = "labels = " + strings.Repeat("a", 2000) }, "remediation.jql", "at most 2000"},
		{"two lines", func(r *connections.RemediationConfig) { r.JQL = "labels = a\nOR labels = b" }, "remediation.jql", "single line"},
		{"order by", func(r *connections.RemediationConfig) { r.JQL = "labels = a ORDER BY created" }, "remediation.jql", "ORDER BY"},
		{"unbalanced", func(r *connections.RemediationConfig) { r.JQL = "labels = a) OR (project = B" }, "remediation.jql", "parenthesis"},
		{"open string", func(r *connections.RemediationConfig) { r.JQL = `labels = "a` }, "remediation.jql", "not closed"},
		{"window short", func(r *connections.RemediationConfig) { r.WindowDays = 6 }, "remediation.window_days", "between 7 and 365"},
		{"window long", func(r *connections.RemediationConfig) { r.WindowDays = 366 }, "remediation.window_days", "between 7 and 365"},
		{"no priorities", func(r *connections.RemediationConfig) { r.SLAs = map[string]connections.Duration{} }, "remediation.slas", "between 1 and 10"},
		{"eleven priorities", func(r *connections.RemediationConfig) { r.SLAs = slas(11) }, "remediation.slas", "between 1 and 10"},
		{"empty name", func(r *connections.RemediationConfig) { r.SLAs = map[string]connections.Duration{"": sla(day)} }, "remediation.slas", "1 to 60"},
		{"long name", func(r *connections.RemediationConfig) {
			r.SLAs = map[string]connections.Duration{strings.Repeat("é", 61): sla(day)}
		}, "remediation.slas", "1 to 60"},
		{"padded name", func(r *connections.RemediationConfig) { r.SLAs = map[string]connections.Duration{" High": sla(day)} }, "remediation.slas", "surrounding"},
		{"control in name", func(r *connections.RemediationConfig) { r.SLAs = map[string]connections.Duration{"Hi\tgh": sla(day)} }, "remediation.slas", "single-line"},
		{"same name twice", func(r *connections.RemediationConfig) {
			r.SLAs = map[string]connections.Duration{"High": sla(day), "high": sla(2 * day)}
		}, "remediation.slas.high", `same priority as "High"`},
		{"sla short", func(r *connections.RemediationConfig) { r.SLAs["High"] = sla(59 * time.Minute) }, "remediation.slas.High", "between 1h0m0s and 8760h0m0s"},
		{"sla long", func(r *connections.RemediationConfig) { r.SLAs["High"] = sla(366 * day) }, "remediation.slas.High", "between"},
		{"sla seconds", func(r *connections.RemediationConfig) { r.SLAs["High"] = sla(time.Hour + time.Second) }, "remediation.slas.High", "whole number of minutes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := connections.DefaultConfig()
			tc.edit(&c.Remediation)
			err := c.Validate()
			var fe *connections.FieldError
			require.True(t, errors.As(err, &fe), "%v", err)
			assert.Equal(t, tc.field, fe.Field)
			assert.Contains(t, fe.Message, tc.says)
		})
	}

	ok := connections.DefaultConfig()
	ok.Remediation = connections.RemediationConfig{JQL: `project in (SEC, "OPS") AND labels = security`, WindowDays: 7,
		SLAs: map[string]connections.Duration{"P1 – Critical": sla(time.Hour), "Blocker": sla(365 * day)}}
	assert.NoError(t, ok.Validate())
	ok.Remediation.SLAs = slas(10)
	assert.NoError(t, ok.Validate())
}

// A PATCH body is decoded strictly and applied field by field; slas replaces the whole map.
func TestRemediationPatch(t *testing.T) {
	t.Parallel()
	var p connections.ConfigPatch
	require.NoError(t, strictjson.Decode([]byte(`{"remediation":{"window_days":30,"slas":{"Critical":"24h","High":"168h"}}}`), &p))
	c := p.Apply(connections.DefaultConfig())
	require.NoError(t, c.Validate())
	assert.Equal(t, connections.DefaultRemediationJQL, c.Remediation.JQL, "an absent field keeps its value")
	assert.Equal(t, 30, c.Remediation.WindowDays)
	assert.Equal(t, map[string]connections.Duration{"Critical": connections.Duration(day), "High": connections.Duration(7 * day)}, c.Remediation.SLAs)
	assert.Equal(t, []string{"Critical", "High"}, c.Remediation.Priorities())

	p = connections.ConfigPatch{}
	require.NoError(t, strictjson.Decode([]byte(`{"remediation":{"jql":"  project = SEC  "}}`), &p))
	c = p.Apply(c)
	assert.Equal(t, "project = SEC", c.Remediation.JQL)
	assert.Len(t, c.Remediation.SLAs, 2, "an absent slas keeps the SLAs")

	for body, field := range map[string]string{
		`{"remediation":{"slas":{"High":"a week"}}}`:         "remediation.slas.High",
		`{"remediation":{"window_days":"90"}}`:               "remediation.window_days",
		`{"remediation":{"priorities":{}}}`:                  "remediation.priorities",
		`{"remediation":{"slas":{"High":"1h","High":"2h"}}}`: "remediation.slas.High",
	} {
		var p connections.ConfigPatch
		err := strictjson.Decode([]byte(body), &p)
		var se *strictjson.Error
		require.True(t, errors.As(err, &se), "%s: %v", body, err)
		assert.Equal(t, field, se.Field, body)
	}
}
