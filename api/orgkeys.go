package api

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// resealView says which workflow re-seals the organization's secrets after a rotation.
type resealView struct {
	WorkflowID string `json:"workflow_id"`
	// Started is false when Temporal could not be asked; the daily org-key-rotation pass then
	// starts the re-seal (old values stay readable meanwhile).
	Started bool `json:"started"`
}

// rotateDataKey rotates the caller's organization's data key: a new version becomes current at
// once, and a re-seal workflow moves every stored secret to it in the background and retires the
// old version once nothing uses it. The request has no parameters (an empty body or {}).
func (s *Server) rotateDataKey(c echo.Context) error {
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) > 0 {
		var none struct{}
		if err := decodeStrict(body, &none); err != nil {
			return err
		}
	}
	ctx := c.Request().Context()
	p := principal(c)
	r, err := s.deps.Tenancy.RotateDataKey(ctx, p.OrgID, s.caller(c), "api")
	if errors.Is(err, seal.ErrNoOrgKey) {
		return &Error{Status: http.StatusConflict, Code: "no_data_key", Message: "the organization has no data key yet"}
	}
	if err != nil {
		return err
	}
	view := resealView{WorkflowID: workflows.OrgKeyResealWorkflowID(p.OrgID, r.Version)}
	if s.deps.Temporal != nil {
		_, _, err := s.workflows.StartOrgKeyReseal(ctx, p.OrgID, r.Version)
		if err == nil {
			view.Started = true
		} else {
			s.log.WarnContext(ctx, "data key rotated but its re-seal workflow was not started; the daily key rotation pass will start it",
				slog.String("org_id", p.OrgID.String()), slog.Int("version", int(r.Version)), slog.String("err", err.Error()))
		}
	}
	return c.JSON(http.StatusAccepted, map[string]any{"version": r.Version, "previous_version": r.PreviousVersion,
		"master_key_id": r.MasterKeyID, "reseal": view})
}

// listDataKeys lists the versions of the caller's organization's data key (never key material).
func (s *Server) listDataKeys(c echo.Context) error {
	keys, err := s.deps.Tenancy.ListDataKeys(c.Request().Context(), principal(c).OrgID)
	if err != nil {
		return err
	}
	var current int32
	for _, k := range keys {
		if k.State == tenancy.DataKeyCurrent {
			current = k.Version
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"current_version": current, "versions": keys})
}
