package connections

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/db/dbq"
)

// Live is the one answer to "may this stored connection still be used?": it has not been deleted
// and is not revoked. A connection that is not live must see no more Jira calls and no more
// writes on its behalf.
func Live(status Status, deleted bool) bool {
	return !deleted && status != StatusRevoked
}

// RequireLive reads the connection in the transaction's organization (row-level security: another
// organization's connection is not found) and refuses it when it is missing (ErrNotFound) or not
// Live (ErrRevoked). Long-running work calls it between steps, because a revoke commits before
// the work is cancelled.
func RequireLive(ctx context.Context, q *dbq.Queries, id uuid.UUID) (dbq.Connection, error) {
	row, err := q.GetConnection(ctx, id)
	return checkLive(id, row, err, "check")
}

// LockLive is RequireLive that also locks the row for the rest of the transaction. Revoke takes
// the same lock, so nothing written under it can follow a committed revoke, even by work whose
// Jira calls were already made.
func LockLive(ctx context.Context, q *dbq.Queries, id uuid.UUID) (dbq.Connection, error) {
	row, err := q.LockConnection(ctx, id)
	return checkLive(id, row, err, "lock")
}

func checkLive(id uuid.UUID, row dbq.Connection, err error, verb string) (dbq.Connection, error) {
	if errors.Is(err, pgx.ErrNoRows) {
		return dbq.Connection{}, fmt.Errorf("connection %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return dbq.Connection{}, fmt.Errorf("%s connection %s: %w", verb, id, err)
	}
	if !Live(Status(row.Status), row.DeletedAt != nil) {
		return dbq.Connection{}, fmt.Errorf("connection %s: %w", id, ErrRevoked)
	}
	return row, nil
}
