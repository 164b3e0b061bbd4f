package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/evidence"
)

type evidenceView struct {
	ID               uuid.UUID       `json:"id"`
	ConnectionID     uuid.UUID       `json:"connection_id"`
	Type             string          `json:"type"`
	Subject          string          `json:"subject"`
	Payload          json.RawMessage `json:"payload"`
	Fingerprint      string          `json:"fingerprint"`
	Provenance       json.RawMessage `json:"provenance"`
	CreatedAt        time.Time       `json:"created_at"`
	LastObservedAt   time.Time       `json:"last_observed_at"`
	CountsAsEvidence bool            `json:"counts_as_evidence"`
	Observations     int64           `json:"observations"`
}

// listEvidence filters by type, control, connection and time; newest first, keyset paginated.
func (s *Server) listEvidence(c echo.Context) error {
	limit, err := queryInt(c, "limit", defaultPageSize, 1, maxPageSize)
	if err != nil {
		return err
	}
	params := dbq.ListEvidenceParams{PageSize: int32(limit)}
	if t := c.QueryParam("type"); t != "" {
		if !evidence.Type(t).Valid() {
			return errInvalidField("type", "unknown evidence type %q", t)
		}
		params.Type = &t
	}
	if ctl := c.QueryParam("control"); ctl != "" {
		if !knownControl(ctl) {
			return errInvalidField("control", "unknown control %q (see GET /v1/controls)", ctl)
		}
		params.ControlID = &ctl
	}
	if raw := c.QueryParam("connection"); raw != "" {
		id, err := uuid.Parse(raw)
		if err != nil {
			return errInvalidField("connection", "must be a connection id")
		}
		params.ConnectionID = &id
	}
	if params.Since, err = queryTime(c, "since"); err != nil {
		return err
	}
	if params.Until, err = queryTime(c, "until"); err != nil {
		return err
	}
	if params.BeforeCreated, params.BeforeID, err = queryCursor(c); err != nil {
		return err
	}
	ctx := c.Request().Context()
	out := []evidenceView{}
	err = s.deps.DB.InOrg(ctx, principal(c).OrgID, func(q *dbq.Queries) error {
		rows, err := q.ListEvidence(ctx, params)
		for _, r := range rows {
			out = append(out, evidenceView{ID: r.ID, ConnectionID: r.ConnectionID, Type: r.Type, Subject: r.Subject,
				Payload: r.Payload, Fingerprint: r.Fingerprint, Provenance: r.Provenance, CreatedAt: r.CreatedAt.UTC(),
				LastObservedAt: r.LastObservedAt.UTC(), CountsAsEvidence: r.CountsAsEvidence, Observations: r.Observations})
		}
		return err
	})
	if err != nil {
		return err
	}
	resp := map[string]any{"evidence": out}
	if len(out) == limit {
		last := out[len(out)-1]
		resp["next_cursor"] = cursorOf(last.CreatedAt, last.ID)
	}
	return c.JSON(http.StatusOK, resp)
}

func knownControl(id string) bool {
	for _, c := range evidence.Catalogue() {
		if c.ID == id {
			return true
		}
	}
	return false
}

func (s *Server) listControls(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"controls": evidence.Catalogue()})
}

// coverage computes control coverage from the org's connections and their freshest observations.
// A connection the workflow has marked stale degrades at once, whatever its timestamps say.
func (s *Server) coverage(c echo.Context) error {
	ctx := c.Request().Context()
	var conns []evidence.Connection
	var obs []evidence.Observation
	err := s.deps.DB.InOrg(ctx, principal(c).OrgID, func(q *dbq.Queries) error {
		rows, err := q.CoverageConnections(ctx)
		if err != nil {
			return err
		}
		for _, r := range rows {
			cfg, err := connections.ParseConfig(r.Config)
			if err != nil {
				return err
			}
			ec := evidence.Connection{ID: r.ID, Status: evidence.ConnectionStatus(r.Status), StaleThreshold: cfg.EffectiveStaleThreshold()}
			if r.LastSuccessAt != nil && !r.Stale {
				ec.LastSuccessfulSync = *r.LastSuccessAt
			}
			conns = append(conns, ec)
		}
		orows, err := q.CoverageObservations(ctx)
		for _, o := range orows {
			obs = append(obs, evidence.Observation{ConnectionID: o.ConnectionID, Type: evidence.Type(o.Type),
				ObservedAt: o.ObservedAt, CountsAsEvidence: o.CountsAsEvidence, Fingerprint: o.Fingerprint})
		}
		return err
	})
	if err != nil {
		return err
	}
	cov, err := evidence.ComputeCoverage(evidence.Catalogue(), conns, obs, time.Now())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, cov)
}

func (s *Server) listAlerts(c echo.Context) error {
	limit, err := queryInt(c, "limit", defaultPageSize, 1, maxPageSize)
	if err != nil {
		return err
	}
	params := dbq.ListAlertsParams{PageSize: int32(limit)}
	if st := c.QueryParam("state"); st != "" {
		if st != "open" && st != "resolved" {
			return errInvalidField("state", "must be open or resolved")
		}
		params.State = &st
	}
	if raw := c.QueryParam("connection"); raw != "" {
		id, err := uuid.Parse(raw)
		if err != nil {
			return errInvalidField("connection", "must be a connection id")
		}
		params.ConnectionID = &id
	}
	type alertView struct {
		ID           uuid.UUID  `json:"id"`
		ConnectionID uuid.UUID  `json:"connection_id"`
		Kind         string     `json:"kind"`
		State        string     `json:"state"`
		Message      string     `json:"message"`
		OpenedAt     time.Time  `json:"opened_at"`
		ResolvedAt   *time.Time `json:"resolved_at"`
	}
	ctx := c.Request().Context()
	out := []alertView{}
	err = s.deps.DB.InOrg(ctx, principal(c).OrgID, func(q *dbq.Queries) error {
		rows, err := q.ListAlerts(ctx, params)
		for _, r := range rows {
			out = append(out, alertView{ID: r.ID, ConnectionID: r.ConnectionID, Kind: r.Kind, State: r.State, Message: r.Message,
				OpenedAt: r.OpenedAt.UTC(), ResolvedAt: utc(r.ResolvedAt)})
		}
		return err
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"alerts": out})
}

type assessmentView struct {
	ID         uuid.UUID   `json:"id"`
	Name       string      `json:"name"`
	Status     string      `json:"status"`
	CreatedAt  time.Time   `json:"created_at"`
	ApprovedAt *time.Time  `json:"approved_at"`
	ApprovedBy *string     `json:"approved_by,omitempty"`
	Evidence   []uuid.UUID `json:"evidence"`
}

func (s *Server) createAssessment(c echo.Context) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 200 {
		return errInvalidField("name", "must be 1-200 characters")
	}
	ctx := c.Request().Context()
	p := principal(c)
	var view assessmentView
	err := s.deps.DB.InOrg(ctx, p.OrgID, func(q *dbq.Queries) error {
		a, err := q.CreateAssessment(ctx, dbq.CreateAssessmentParams{OrgID: p.OrgID, Name: req.Name})
		if err != nil {
			return err
		}
		view = assessmentView{ID: a.ID, Name: a.Name, Status: a.Status, CreatedAt: a.CreatedAt.UTC(), Evidence: []uuid.UUID{}}
		_, err = audit.Record(ctx, q, audit.Entry{OrgID: p.OrgID, Actor: actor(c), Action: "assessment.create",
			TargetType: "assessment", TargetID: a.ID.String(), SourceIP: s.clientAddr(c)})
		return err
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, view)
}

// lockAssessment takes the assessment's row lock through lock (shared for attaching, exclusive for
// approving; see db/queries/reporting.sql), or answers 404.
func lockAssessment(c echo.Context, q *dbq.Queries, lock func(context.Context, uuid.UUID) (string, error)) error {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return errNotFound("assessment")
	}
	if _, err := lock(c.Request().Context(), id); errors.Is(err, pgx.ErrNoRows) {
		return errNotFound("assessment")
	} else if err != nil {
		return fmt.Errorf("lock assessment %s: %w", id, err)
	}
	return nil
}

// loadAssessment fetches the assessment named in the path within q's org, or 404.
func loadAssessment(c echo.Context, q *dbq.Queries) (assessmentView, error) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return assessmentView{}, errNotFound("assessment")
	}
	ctx := c.Request().Context()
	a, err := q.GetAssessment(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return assessmentView{}, errNotFound("assessment")
	}
	if err != nil {
		return assessmentView{}, err
	}
	ev, err := q.ListAssessmentEvidence(ctx, id)
	if err != nil {
		return assessmentView{}, err
	}
	v := assessmentView{ID: a.ID, Name: a.Name, Status: a.Status, CreatedAt: a.CreatedAt.UTC(), ApprovedAt: utc(a.ApprovedAt),
		ApprovedBy: a.ApprovedBy, Evidence: make([]uuid.UUID, 0, len(ev))}
	for _, e := range ev {
		v.Evidence = append(v.Evidence, e.EvidenceID)
	}
	return v, nil
}

func (s *Server) getAssessment(c echo.Context) error {
	var view assessmentView
	err := s.deps.DB.InOrg(c.Request().Context(), principal(c).OrgID, func(q *dbq.Queries) error {
		var err error
		view, err = loadAssessment(c, q)
		return err
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, view)
}

func (s *Server) attachEvidence(c echo.Context) error {
	var req struct {
		EvidenceIDs []string `json:"evidence_ids"`
	}
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if len(req.EvidenceIDs) == 0 || len(req.EvidenceIDs) > 500 {
		return errInvalidField("evidence_ids", "must list 1-500 evidence ids")
	}
	ids := make([]uuid.UUID, 0, len(req.EvidenceIDs))
	for i, raw := range req.EvidenceIDs {
		id, err := uuid.Parse(raw)
		if err != nil {
			return errInvalidField("evidence_ids", "item %d is not an evidence id", i)
		}
		ids = append(ids, id)
	}
	ctx := c.Request().Context()
	p := principal(c)
	var view assessmentView
	err := s.deps.DB.InOrg(ctx, p.OrgID, func(q *dbq.Queries) error {
		if err := lockAssessment(c, q, q.LockAssessmentForAttach); err != nil {
			return err
		}
		a, err := loadAssessment(c, q)
		if err != nil {
			return err
		}
		if a.Status == "approved" {
			return &Error{Status: http.StatusConflict, Code: "assessment_approved", Message: "the assessment is approved; its evidence is frozen"}
		}
		for i, id := range ids {
			if _, err := q.GetEvidence(ctx, id); errors.Is(err, pgx.ErrNoRows) {
				return errInvalidField("evidence_ids", "item %d: evidence %s not found", i, id)
			} else if err != nil {
				return err
			}
			if _, err := q.AttachEvidence(ctx, dbq.AttachEvidenceParams{OrgID: p.OrgID, AssessmentID: a.ID, EvidenceID: id}); err != nil {
				return err
			}
		}
		if _, err := audit.Record(ctx, q, audit.Entry{OrgID: p.OrgID, Actor: actor(c), Action: "assessment.attach_evidence",
			TargetType: "assessment", TargetID: a.ID.String(), SourceIP: s.clientAddr(c), Metadata: map[string]any{"count": len(ids)}}); err != nil {
			return err
		}
		view, err = loadAssessment(c, q)
		return err
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, view)
}

func (s *Server) approveAssessment(c echo.Context) error {
	ctx := c.Request().Context()
	p := principal(c)
	var view assessmentView
	err := s.deps.DB.InOrg(ctx, p.OrgID, func(q *dbq.Queries) error {
		if err := lockAssessment(c, q, q.LockAssessmentForApproval); err != nil {
			return err
		}
		// Read under the lock: every attach that got in first has committed, none can follow.
		a, err := loadAssessment(c, q)
		if err != nil {
			return err
		}
		if a.Status == "approved" {
			return &Error{Status: http.StatusConflict, Code: "assessment_approved", Message: "the assessment is already approved"}
		}
		if len(a.Evidence) == 0 {
			return &Error{Status: http.StatusConflict, Code: "assessment_empty", Message: "attach evidence before approving"}
		}
		by := "api_key:" + p.KeyID.String()
		if _, err := q.ApproveAssessment(ctx, dbq.ApproveAssessmentParams{ID: a.ID, ApprovedBy: &by}); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) {
				return &Error{Status: http.StatusConflict, Code: "assessment_approved", Message: pgErr.Message}
			}
			return err
		}
		if _, err := audit.Record(ctx, q, audit.Entry{OrgID: p.OrgID, Actor: actor(c), Action: "assessment.approve",
			TargetType: "assessment", TargetID: a.ID.String(), SourceIP: s.clientAddr(c), Metadata: map[string]any{"evidence": len(a.Evidence)}}); err != nil {
			return err
		}
		view, err = loadAssessment(c, q)
		return err
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, view)
}
