package app

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/evidence"
)

// SyncCatalogue writes evidence.Catalogue() into the controls tables as the owner role, in one
// transaction. The Go catalogue is the single source of truth; the tables exist so that SQL can
// join evidence to controls. Running it twice changes nothing.
func SyncCatalogue(ctx context.Context, ownerURL string) error {
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		return fmt.Errorf("sync control catalogue: connect: %w", err)
	}
	defer conn.Close(ctx)
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		q := dbq.New(tx)
		cat := evidence.Catalogue()
		ids := make([]string, 0, len(cat))
		for _, c := range cat {
			ids = append(ids, c.ID)
			if err := q.UpsertControl(ctx, dbq.UpsertControlParams{
				ID: c.ID, Framework: string(c.Framework), Reference: c.Reference, Title: c.Title, Rationale: c.Rationale,
			}); err != nil {
				return fmt.Errorf("sync control %s: %w", c.ID, err)
			}
			if err := q.DeleteControlEvidenceTypes(ctx, c.ID); err != nil {
				return fmt.Errorf("sync control %s: %w", c.ID, err)
			}
			for _, t := range c.Requires {
				if err := q.InsertControlEvidenceType(ctx, dbq.InsertControlEvidenceTypeParams{ControlID: c.ID, EvidenceType: string(t)}); err != nil {
					return fmt.Errorf("sync control %s evidence type %s: %w", c.ID, t, err)
				}
			}
		}
		if err := q.DeleteControlsNotIn(ctx, ids); err != nil {
			return fmt.Errorf("sync control catalogue: remove retired controls: %w", err)
		}
		return nil
	})
}
