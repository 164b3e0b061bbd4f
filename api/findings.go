package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/findings"
)

type findingLinkView struct {
	ConnectionID     uuid.UUID  `json:"connection_id"`
	State            string     `json:"state"`
	IssueKey         *string    `json:"issue_key,omitempty"`
	IssueURL         string     `json:"issue_url,omitempty"`
	LastPushedStatus *string    `json:"last_pushed_status,omitempty"`
	LastJiraStatus   *string    `json:"last_jira_status,omitempty"`
	LastPushAt       *time.Time `json:"last_push_at,omitempty"`
	LastInboundAt    *time.Time `json:"last_inbound_at,omitempty"`
	LastError        *string    `json:"last_error,omitempty"`
	LastErrorKind    *string    `json:"last_error_kind,omitempty"`
}

type findingView struct {
	findings.Finding
	StatusSource    string            `json:"status_source"`
	StatusChangedAt time.Time         `json:"status_changed_at"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`
	Links           []findingLinkView `json:"jira_links"`
}

func findingFromRow(r dbq.Finding) findingView {
	return findingView{
		Finding: findings.Finding{ID: r.ID, ExternalID: r.ExternalID, Title: r.Title, Severity: findings.Severity(r.Severity),
			Status: findings.Status(r.Status), ProbeID: r.ProbeID, ScanID: r.ScanID, FrameworkRefs: r.FrameworkRefs, Excerpt: r.Excerpt},
		StatusSource: r.StatusSource, StatusChangedAt: r.StatusChangedAt.UTC(), CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		Links: []findingLinkView{},
	}
}

// withLinks adds the finding's Jira links (issue and sync state per connection).
func (s *Server) withLinks(ctx context.Context, q *dbq.Queries, v *findingView) error {
	links, err := q.LinksOfFinding(ctx, v.ID)
	if err != nil {
		return err
	}
	sites := map[uuid.UUID]string{}
	for _, l := range links {
		lv := findingLinkView{ConnectionID: l.ConnectionID, State: l.State, IssueKey: l.IssueKey, LastPushedStatus: l.LastPushedStatus,
			LastJiraStatus: l.LastJiraStatus, LastPushAt: utc(l.LastPushAt), LastInboundAt: utc(l.LastInboundAt),
			LastError: l.LastError, LastErrorKind: l.LastErrorKind}
		if l.IssueKey != nil {
			site, ok := sites[l.ConnectionID]
			if !ok {
				if c, err := q.GetConnection(ctx, l.ConnectionID); err == nil {
					site = c.SiteUrl
				}
				sites[l.ConnectionID] = site
			}
			if site != "" {
				lv.IssueURL = site + "/browse/" + *l.IssueKey
			}
		}
		v.Links = append(v.Links, lv)
	}
	return nil
}

// enqueueFinding queues f for every connection that must act on it: connections whose rule
// matches, and connections that already have an issue for it (its status change must reach that
// issue even if the finding no longer matches the rule). It returns the workflows to nudge.
func enqueueFinding(ctx context.Context, q *dbq.Queries, orgID uuid.UUID, f findings.Finding) ([]uuid.UUID, error) {
	conns, err := q.FindingSyncConnections(ctx)
	if err != nil {
		return nil, err
	}
	links, err := q.LinksOfFinding(ctx, f.ID)
	if err != nil {
		return nil, err
	}
	linked := map[uuid.UUID]bool{}
	for _, l := range links {
		linked[l.ConnectionID] = true
	}
	var nudge []uuid.UUID
	for _, c := range conns {
		cfg, err := connections.ParseConfig(c.Config)
		if err != nil || cfg.FindingSync == nil {
			continue
		}
		if !linked[c.ID] && !cfg.FindingSync.Matches(f) {
			continue
		}
		if err := q.EnqueueFinding(ctx, dbq.EnqueueFindingParams{OrgID: orgID, ConnectionID: c.ID, FindingID: f.ID}); err != nil {
			return nil, err
		}
		nudge = append(nudge, c.ID)
	}
	return nudge, nil
}

// nudge tells connection workflows that their finding queue has work. Best effort: the queue in
// Postgres is authoritative and workflows also drain it on their own schedule.
func (s *Server) nudge(ctx context.Context, connIDs []uuid.UUID) {
	for _, id := range connIDs {
		if err := s.workflows.FindingsPending(ctx, id); err != nil {
			s.log.WarnContext(ctx, "findings-pending signal not delivered", "connection_id", id, "err", err)
		}
	}
}

func (s *Server) upsertFinding(c echo.Context) error {
	var in findings.Finding
	if err := s.decodeJSON(c, &in); err != nil {
		return err
	}
	if in.ID != uuid.Nil {
		return errInvalidField("id", "is assigned by jiraconnect; findings are identified by external_id")
	}
	in = in.Normalize()
	if err := in.Validate(); err != nil {
		return findingFieldError(err)
	}
	ctx := c.Request().Context()
	p := principal(c)
	var view findingView
	var inserted bool
	var nudge []uuid.UUID
	err := s.deps.DB.InOrg(ctx, p.OrgID, func(q *dbq.Queries) error {
		refs := in.FrameworkRefs
		if refs == nil {
			refs = []string{}
		}
		row, err := q.UpsertFinding(ctx, dbq.UpsertFindingParams{OrgID: p.OrgID, ExternalID: in.ExternalID, Title: in.Title,
			Severity: string(in.Severity), Status: string(in.Status), ProbeID: in.ProbeID, ScanID: in.ScanID,
			FrameworkRefs: refs, Excerpt: in.Excerpt})
		if err != nil {
			return err
		}
		inserted = row.Inserted
		view = findingFromRow(dbq.Finding{ID: row.ID, OrgID: row.OrgID, ExternalID: row.ExternalID, Title: row.Title,
			Severity: row.Severity, Status: row.Status, ProbeID: row.ProbeID, ScanID: row.ScanID, FrameworkRefs: row.FrameworkRefs,
			Excerpt: row.Excerpt, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt, StatusSource: row.StatusSource, StatusChangedAt: row.StatusChangedAt})
		if nudge, err = enqueueFinding(ctx, q, p.OrgID, view.Finding); err != nil {
			return err
		}
		action := "finding.update"
		if inserted {
			action = "finding.create"
		}
		if _, err := audit.Record(ctx, q, audit.Entry{OrgID: p.OrgID, Actor: actor(c), Action: action, TargetType: "finding",
			TargetID: view.ID.String(), SourceIP: s.clientAddr(c),
			Metadata: map[string]any{"external_id": in.ExternalID, "severity": string(in.Severity), "status": string(in.Status)}}); err != nil {
			return err
		}
		return s.withLinks(ctx, q, &view)
	})
	if err != nil {
		return err
	}
	s.nudge(ctx, nudge)
	status := http.StatusOK
	if inserted {
		status = http.StatusCreated
	}
	return c.JSON(status, view)
}

// loadFinding returns the finding named in the path, within q's org, or 404.
func loadFinding(c echo.Context, q *dbq.Queries) (findingView, error) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return findingView{}, errNotFound("finding")
	}
	row, err := q.GetFinding(c.Request().Context(), id)
	if errors.Is(err, pgx.ErrNoRows) {
		return findingView{}, errNotFound("finding")
	}
	if err != nil {
		return findingView{}, err
	}
	return findingFromRow(row), nil
}

func (s *Server) getFinding(c echo.Context) error {
	ctx := c.Request().Context()
	var view findingView
	err := s.deps.DB.InOrg(ctx, principal(c).OrgID, func(q *dbq.Queries) error {
		var err error
		if view, err = loadFinding(c, q); err != nil {
			return err
		}
		return s.withLinks(ctx, q, &view)
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, view)
}

func (s *Server) listFindings(c echo.Context) error {
	limit, err := queryInt(c, "limit", defaultPageSize, 1, maxPageSize)
	if err != nil {
		return err
	}
	params := dbq.ListFindingsParams{PageSize: int32(limit)}
	if st := c.QueryParam("status"); st != "" {
		if !findings.Status(st).Valid() {
			return errInvalidField("status", "must be one of open, triaged, resolved, accepted, false_positive")
		}
		params.Status = &st
	}
	if sev := c.QueryParam("severity"); sev != "" {
		if !findings.Severity(sev).Valid() {
			return errInvalidField("severity", "must be one of info, low, medium, high, critical")
		}
		params.Severity = &sev
	}
	if params.BeforeCreated, params.BeforeID, err = queryCursor(c); err != nil {
		return err
	}
	ctx := c.Request().Context()
	out := []findingView{}
	err = s.deps.DB.InOrg(ctx, principal(c).OrgID, func(q *dbq.Queries) error {
		rows, err := q.ListFindings(ctx, params)
		if err != nil {
			return err
		}
		for _, r := range rows {
			v := findingFromRow(r)
			if err := s.withLinks(ctx, q, &v); err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	resp := map[string]any{"findings": out}
	if len(out) == limit {
		last := out[len(out)-1]
		resp["next_cursor"] = cursorOf(last.CreatedAt, last.ID)
	}
	return c.JSON(http.StatusOK, resp)
}

// patchFinding changes a finding's status; the change is pushed to every linked Jira issue.
func (s *Server) patchFinding(c echo.Context) error {
	var req struct {
		Status string `json:"status"`
	}
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	st := findings.Status(req.Status)
	if !st.Valid() {
		return errInvalidField("status", "must be one of open, triaged, resolved, accepted, false_positive")
	}
	ctx := c.Request().Context()
	p := principal(c)
	var view findingView
	var nudge []uuid.UUID
	err := s.deps.DB.InOrg(ctx, p.OrgID, func(q *dbq.Queries) error {
		cur, err := loadFinding(c, q)
		if err != nil {
			return err
		}
		if cur.Status != st {
			row, err := q.SetFindingStatus(ctx, dbq.SetFindingStatusParams{ID: cur.ID, Status: string(st), Source: "api"})
			if err != nil {
				return err
			}
			cur = findingFromRow(row)
			if nudge, err = enqueueFinding(ctx, q, p.OrgID, cur.Finding); err != nil {
				return err
			}
			if _, err := audit.Record(ctx, q, audit.Entry{OrgID: p.OrgID, Actor: actor(c), Action: "finding.status_change",
				TargetType: "finding", TargetID: cur.ID.String(), SourceIP: s.clientAddr(c),
				Metadata: map[string]any{"status": string(st), "source": "api"}}); err != nil {
				return err
			}
		}
		view = cur
		return s.withLinks(ctx, q, &view)
	})
	if err != nil {
		return err
	}
	s.nudge(ctx, nudge)
	return c.JSON(http.StatusOK, view)
}
