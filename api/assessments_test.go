package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/api"
)

// seedEvidence stores n evidence rows of one connection of org, as the owner, and returns their ids.
func seedEvidence(t *testing.T, org uuid.UUID, n int) []string {
	t.Helper()
	ctx := context.Background()
	owner := testDB.Owner(t)
	connID := uuid.New()
	_, err := owner.Exec(ctx, `INSERT INTO connections (id, org_id, kind, site_url, status, workflow_id)
		VALUES ($1, $2, 'cloud_token', 'https://acme.atlassian.net', 'active', $3)`, connID, org, "jira-connection/"+connID.String())
	require.NoError(t, err)
	ids := make([]string, n)
	for i := range ids {
		id := uuid.New()
		_, err := owner.Exec(ctx, `INSERT INTO evidence (id, org_id, connection_id, type, subject, payload, fingerprint, provenance)
			VALUES ($1, $2, $3, 'jira.project_inventory', 'site', jsonb_build_object('projects', $4::int), $5, '{}')`,
			id, org, connID, i, "fp-"+id.String())
		require.NoError(t, err)
		ids[i] = id.String()
	}
	return ids
}

// TestApprovalIsAPointInTime races attaches against an approval: the approved assessment holds
// exactly the evidence the approval answered with and recorded in its audit row; every attach
// either landed before it (200, included) or after it (409 assessment_approved); none fails.
func TestApprovalIsAPointInTime(t *testing.T) {
	e := newEnv(t, api.PingFunc(okPing))
	org, admin := e.org("approval-race")
	const trials, attaches = 10, 24
	evidence := seedEvidence(t, org.ID, trials*(attaches+1))
	for trial := range trials {
		ids := evidence[trial*(attaches+1) : (trial+1)*(attaches+1)]
		created := e.do("POST", "/v1/assessments", admin, "application/json", fmt.Sprintf(`{"name":"SOC 2 trial %d"}`, trial))
		require.Equal(t, 201, created.status, created.raw)
		path := "/v1/assessments/" + created.body["id"].(string)
		first := e.do("POST", path+"/evidence", admin, "application/json", `{"evidence_ids":["`+ids[0]+`"]}`)
		require.Equal(t, 200, first.status, first.raw)

		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([]response, attaches)
		for i := range attaches {
			wg.Go(func() {
				<-start
				results[i] = e.do("POST", path+"/evidence", admin, "application/json", `{"evidence_ids":["`+ids[i+1]+`"]}`)
			})
		}
		var approved response
		wg.Go(func() {
			<-start
			approved = e.do("POST", path+"/approve", admin, "", "")
		})
		close(start)
		wg.Wait()

		require.Equal(t, 200, approved.status, approved.raw)
		want := []string{ids[0]}
		for i, r := range results {
			switch {
			case r.status == 200:
				want = append(want, ids[i+1])
			case r.status == 409:
				assert.Equal(t, "assessment_approved", errField(r, "code"), r.raw)
			default:
				t.Errorf("trial %d attach %d: %d %s", trial, i, r.status, r.raw)
			}
		}
		frozen := stringsOf(approved.body["evidence"])
		final := e.do("GET", path, admin, "", "")
		require.Equal(t, 200, final.status)
		slices.Sort(want)
		assert.Equal(t, want, sorted(frozen), "trial %d: the approval answered with other evidence than the attaches that landed", trial)
		assert.Equal(t, frozen, stringsOf(final.body["evidence"]), "trial %d: the approved assessment holds evidence the approver never saw", trial)

		var meta []byte
		require.NoError(t, testDB.Owner(t).QueryRow(context.Background(),
			`SELECT metadata FROM audit_log WHERE org_id = $1 AND action = 'assessment.approve' AND target_id = $2`,
			org.ID, created.body["id"]).Scan(&meta))
		var m struct{ Evidence int }
		require.NoError(t, json.Unmarshal(meta, &m))
		assert.Equal(t, len(frozen), m.Evidence, "trial %d: the audit row's count differs from what is frozen", trial)
	}
}

func stringsOf(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
