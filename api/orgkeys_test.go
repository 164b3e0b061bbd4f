package api_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Rotating without a reachable Temporal still rotates: the new version is current at once, the
// response names the re-seal workflow the daily pass will start, and bad bodies and roles change
// nothing.
func TestRotateDataKeyWithoutTemporal(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t, 0)
	org, admin := e.org("rotating")
	_, auditor := e.createKey(admin, `{"name":"auditor","role":"auditor"}`)

	before := e.do("GET", "/v1/orgs/me/keys", auditor, "", "")
	require.Equal(t, 200, before.status, before.raw)
	assert.EqualValues(t, 1, before.body["current_version"])

	for _, bad := range []struct{ body, code, field string }{
		{`{"version":3}`, "unknown_field", "version"},
		{`[]`, "invalid_json", ""},
		{`{"a":1,"a":1}`, "", ""},
	} {
		r := e.do("POST", "/v1/orgs/me/keys/rotate", admin, "application/json", bad.body)
		require.Equal(t, 400, r.status, "%s: %s", bad.body, r.raw)
		if bad.code != "" {
			assert.Equal(t, bad.code, errField(r, "code"), bad.body)
		}
		if bad.field != "" {
			assert.Equal(t, bad.field, errField(r, "field"), bad.body)
		}
	}
	r := e.do("POST", "/v1/orgs/me/keys/rotate", auditor, "", "")
	require.Equal(t, 403, r.status, r.raw)
	after := e.do("GET", "/v1/orgs/me/keys", auditor, "", "")
	assert.EqualValues(t, 1, after.body["current_version"], "refused requests rotate nothing")

	for i, req := range []struct{ contentType, body string }{{"", ""}, {"application/json", "{}"}, {"application/json", ""}} {
		r := e.do("POST", "/v1/orgs/me/keys/rotate", admin, req.contentType, req.body)
		require.Equal(t, 202, r.status, r.raw)
		version := i + 2
		assert.EqualValues(t, version, r.body["version"])
		assert.EqualValues(t, version-1, r.body["previous_version"])
		reseal := r.body["reseal"].(map[string]any)
		assert.Equal(t, fmt.Sprintf("org-key-reseal/%s/v%d", org.ID, version), reseal["workflow_id"])
		assert.Equal(t, false, reseal["started"], "no Temporal: the daily pass starts it")
	}
	listed := e.do("GET", "/v1/orgs/me/keys", auditor, "", "")
	assert.EqualValues(t, 4, listed.body["current_version"])
	versions := listed.body["versions"].([]any)
	require.Len(t, versions, 4)
	states := []any{}
	for _, v := range versions {
		states = append(states, v.(map[string]any)["state"])
	}
	assert.Equal(t, []any{"current", "previous", "previous", "previous"}, states)
}
