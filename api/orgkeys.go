package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/tenancy"
)

// rotationView is a data key rotation and the re-seal that follows it.
type rotationView struct {
	Version         int32      `json:"version"`
	PreviousVersion int32      `json:"previous_version"`
	MasterKeyID     string     `json:"master_key_id"`
	Reseal          resealView `json:"reseal"`
}

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
	if err := s.decodeEmpty(c); err != nil {
		return err
	}
	r, err := s.keyRotator.Rotate(c.Request().Context(), principal(c).OrgID, s.caller(c), "api")
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, rotationView{Version: r.Version, PreviousVersion: r.PreviousVersion, MasterKeyID: r.MasterKeyID,
		Reseal: resealView{WorkflowID: r.ResealWorkflowID, Started: r.ResealStarted}})
}

// dataKeysView lists the versions of an organization's data key (never key material).
type dataKeysView struct {
	CurrentVersion int32                `json:"current_version"`
	Versions       []tenancy.KeyVersion `json:"versions"`
}

// listDataKeys lists the versions of the caller's organization's data key.
func (s *Server) listDataKeys(c echo.Context) error {
	keys, err := s.deps.Tenancy.ListDataKeys(c.Request().Context(), principal(c).OrgID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, dataKeysView{CurrentVersion: tenancy.CurrentVersion(keys), Versions: keys})
}
