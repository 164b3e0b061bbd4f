package connections_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

func TestLive(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status  connections.Status
		deleted bool
		want    bool
	}{
		{connections.StatusActive, false, true},
		{connections.StatusPendingAuth, false, true},
		{connections.StatusNeedsReauth, false, true},
		{connections.StatusRevoked, false, false},
		{connections.StatusActive, true, false},
		{connections.StatusRevoked, true, false},
	} {
		assert.Equal(t, tc.want, connections.Live(tc.status, tc.deleted), "%s, deleted %t", tc.status, tc.deleted)
	}
}

// RequireLive and LockLive refuse, under row-level security, a connection of another
// organization (not found), a revoked one and a deleted one, and return the row of a live one.
func TestRequireLive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := testDB.Open(t)
	kr, err := seal.OpenLocalKeyring(t.TempDir())
	require.NoError(t, err)
	sealer, err := seal.New(kr, tenancy.KeyStore{DB: d}, seal.Options{})
	require.NoError(t, err)
	orgs := &tenancy.Service{DB: d, Sealer: sealer}
	actor := audit.Actor{Type: audit.ActorCLI, ID: "test"}
	org, _, err := orgs.CreateOrg(ctx, "live-"+uuid.NewString()[:8], actor)
	require.NoError(t, err)
	other, _, err := orgs.CreateOrg(ctx, "live-other-"+uuid.NewString()[:8], actor)
	require.NoError(t, err)
	cfg, err := json.Marshal(connections.DefaultConfig())
	require.NoError(t, err)
	create := func(status connections.Status) uuid.UUID {
		id := uuid.New()
		require.NoError(t, d.InOrg(ctx, org.ID, func(q *dbq.Queries) error {
			_, err := q.CreateConnection(ctx, dbq.CreateConnectionParams{ID: id, OrgID: org.ID, Kind: string(connections.KindCloudToken),
				SiteUrl: "https://acme.atlassian.net", Status: string(status), Config: cfg, Scopes: []string{},
				WorkflowID: "jira-connection/" + id.String()})
			return err
		}))
		return id
	}
	live, revoked, deleted := create(connections.StatusActive), create(connections.StatusActive), create(connections.StatusNeedsReauth)
	require.NoError(t, d.InOrg(ctx, org.ID, func(q *dbq.Queries) error {
		if _, err := q.RevokeConnection(ctx, revoked); err != nil {
			return err
		}
		_, err := q.RevokeConnection(ctx, deleted)
		return err
	}))
	// A row that is deleted but whose status says otherwise is not live either.
	_, err = testDB.Owner(t).Exec(ctx, `UPDATE connections SET status = 'needs_reauth' WHERE id = $1`, deleted)
	require.NoError(t, err)

	for name, check := range map[string]func(context.Context, *dbq.Queries, uuid.UUID) (dbq.Connection, error){
		"RequireLive": connections.RequireLive, "LockLive": connections.LockLive,
	} {
		require.NoError(t, d.InOrg(ctx, org.ID, func(q *dbq.Queries) error {
			row, err := check(ctx, q, live)
			assert.NoError(t, err, name)
			assert.Equal(t, live, row.ID, name)
			_, err = check(ctx, q, revoked)
			assert.ErrorIs(t, err, connections.ErrRevoked, name)
			_, err = check(ctx, q, deleted)
			assert.ErrorIs(t, err, connections.ErrRevoked, name)
			_, err = check(ctx, q, uuid.New())
			assert.ErrorIs(t, err, connections.ErrNotFound, name)
			return nil
		}))
		require.NoError(t, d.InOrg(ctx, other.ID, func(q *dbq.Queries) error {
			_, err := check(ctx, q, live)
			assert.ErrorIs(t, err, connections.ErrNotFound, name+" from another organization")
			return nil
		}))
	}
}
