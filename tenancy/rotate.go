package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/apperr"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/seal"
)

// ResealStarter starts the re-seal that follows the rotation of an organization's data key to
// version (workflowclient.Client implements it). It returns the re-seal's workflow id even when
// the start failed, and started=false without error when that re-seal already runs.
type ResealStarter interface {
	StartOrgKeyReseal(ctx context.Context, orgID uuid.UUID, version int32) (id string, started bool, err error)
}

// KeyRotator is the "rotate now" use case the API and the CLI share: rotate the organization's
// data key, then start the re-seal that moves every stored secret to the new version and retires
// the old one once nothing uses it.
type KeyRotator struct {
	Keys *Service
	// Reseals starts re-seal workflows.
	Reseals ResealStarter
	Log     *slog.Logger
}

// RotationStarted is a rotation done and the re-seal that follows it.
type RotationStarted struct {
	Rotation
	// ResealWorkflowID names the re-seal workflow, started now or by the next daily pass.
	ResealWorkflowID string
	// ResealStarted is false when Temporal could not be asked: the old
	// values stay readable, and the daily pass starts the re-seal. An already running re-seal of
	// the same version counts as started.
	ResealStarted bool
}

// Rotate rotates orgID's data key (audited org_key.rotate as by) and starts its re-seal. A
// re-seal that cannot be started is not a failure of the rotation — the rotation is already
// committed and safe — so it is logged and reported as ResealStarted=false. An organization
// without a data key is the conflict no_data_key.
func (r *KeyRotator) Rotate(ctx context.Context, orgID uuid.UUID, by audit.Caller, reason string) (RotationStarted, error) {
	rot, err := r.Keys.RotateDataKey(ctx, orgID, by, reason)
	if errors.Is(err, seal.ErrNoOrgKey) {
		return RotationStarted{}, apperr.Conflict("no_data_key", "the organization has no data key yet")
	}
	if err != nil {
		return RotationStarted{}, fmt.Errorf("rotate data key of organization %s: %w", orgID, err)
	}
	id, _, err := r.Reseals.StartOrgKeyReseal(ctx, orgID, rot.Version)
	out := RotationStarted{Rotation: rot, ResealWorkflowID: id}
	if err != nil {
		r.log().WarnContext(ctx, "data key rotated but its re-seal workflow was not started; the daily key rotation pass will start it",
			slog.String("org_id", orgID.String()), slog.Int("version", int(rot.Version)), slog.String("err", err.Error()))
		return out, nil
	}
	out.ResealStarted = true
	return out, nil
}

func (r *KeyRotator) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}
