package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"

	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
)

// alertKind keeps alert kinds usable as metric labels and greppable in logs.
var alertKind = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

func validAlert(in AlertInput) error {
	if err := validRef(in.ConnectionRef); err != nil {
		return err
	}
	if !alertKind.MatchString(in.Kind) {
		return failure.InvalidInput(fmt.Sprintf("alert kind %q must be lower-case letters, digits and underscores", in.Kind))
	}
	return nil
}

// OpenAlert opens an alert of in.Kind on the connection, unless one is already open: at most one
// alert per connection and kind is open at a time (a partial unique index enforces it), so calling
// twice — or retrying — leaves exactly one open alert. Only the call that actually opens the alert
// writes the alert.open audit row, the structured log line and the metric. A revoked connection
// gets no new alert.
func (a *Activities) OpenAlert(ctx context.Context, in AlertInput) error {
	if err := validAlert(in); err != nil {
		return activityError(ctx, err)
	}
	message := failure.Truncate(in.Message, 1000)
	if message == "" {
		message = in.Kind
	}
	var opened *dbq.OpenAlertRow
	err := a.db.InOrg(ctx, in.OrgID, func(q *dbq.Queries) error {
		row, err := q.OpenAlert(ctx, dbq.OpenAlertParams{
			ConnectionID: in.ConnectionID, Kind: in.Kind, Message: message, OpenedAt: a.now().UTC(),
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // already open, or the connection is revoked or not in this org
		}
		if err != nil {
			return fmt.Errorf("insert alert: %w", err)
		}
		opened = &row
		_, err = audit.Record(ctx, q, audit.Entry{
			OrgID: in.OrgID, Actor: audit.Actor{Type: audit.ActorSystem, ID: "alerts"}, Action: "alert.open",
			TargetType: "connection", TargetID: in.ConnectionID.String(),
			Metadata: map[string]any{"alert_id": row.ID.String(), "kind": in.Kind, "message": message},
		})
		return err
	})
	if err != nil {
		return activityError(ctx, fmt.Errorf("open %s alert on connection %s: %w", in.Kind, in.ConnectionID, err))
	}
	if opened != nil {
		a.alertsOpened.WithLabelValues(in.Kind).Inc()
		a.logger(in.ConnectionRef).Warn("alert opened", slog.String("alert_id", opened.ID.String()),
			slog.String("kind", in.Kind), slog.String("message", message))
	}
	return nil
}

// ResolveAlert resolves the open alert of in.Kind on the connection, if there is one. Resolving
// when nothing is open changes nothing and writes no audit row, so retries are harmless.
func (a *Activities) ResolveAlert(ctx context.Context, in AlertInput) error {
	if err := validAlert(in); err != nil {
		return activityError(ctx, err)
	}
	var resolved []dbq.ResolveAlertRow
	now := a.now().UTC()
	err := a.db.InOrg(ctx, in.OrgID, func(q *dbq.Queries) error {
		var err error
		resolved, err = q.ResolveAlert(ctx, dbq.ResolveAlertParams{ConnectionID: in.ConnectionID, Kind: in.Kind, ResolvedAt: &now})
		if err != nil {
			return fmt.Errorf("resolve alert: %w", err)
		}
		for _, r := range resolved {
			meta := map[string]any{"alert_id": r.ID.String(), "kind": r.Kind, "open_seconds": int64(now.Sub(r.OpenedAt).Seconds())}
			if in.Message != "" {
				meta["message"] = failure.Truncate(in.Message, 1000)
			}
			if _, err := audit.Record(ctx, q, audit.Entry{
				OrgID: in.OrgID, Actor: audit.Actor{Type: audit.ActorSystem, ID: "alerts"}, Action: "alert.resolve",
				TargetType: "connection", TargetID: in.ConnectionID.String(), Metadata: meta,
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return activityError(ctx, fmt.Errorf("resolve %s alert on connection %s: %w", in.Kind, in.ConnectionID, err))
	}
	for _, r := range resolved {
		a.alertsResolved.WithLabelValues(r.Kind).Inc()
		a.logger(in.ConnectionRef).Info("alert resolved", slog.String("alert_id", r.ID.String()), slog.String("kind", r.Kind))
	}
	return nil
}
