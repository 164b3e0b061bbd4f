package jira

import (
	"context"
	"fmt"
	"net/http"
)

// maxProjectIssueTypes bounds the project-statuses answer (an unpaged array): far beyond any real
// project's issue types, it only stops a misbehaving server from growing the result unbounded.
const maxProjectIssueTypes = 1000

// IssueTypeStatuses is one issue type of a project with the statuses of its workflow.
type IssueTypeStatuses struct {
	IssueType IssueType
	Statuses  []Status
}

// ProjectStatuses lists the project's issue types, each with the statuses its workflow uses
// (GET project/{projectIdOrKey}/statuses, one unpaged call on Cloud v3 and Data Center v2). It
// needs only the Browse Projects permission (classic scope read:jira-work), so it doubles as the
// "is this project visible" probe: a project that does not exist or is not visible to the
// credential is KindNotFound.
//
// A status listed here exists in the workflow; whether a given issue can reach it from its current
// status is a question for Transitions/MoveTo.
func (c *Client) ProjectStatuses(ctx context.Context, project string) ([]IssueTypeStatuses, error) {
	const op = "project.statuses"
	if !validProjectRef(project) {
		return nil, configError(op, "invalid project key or id")
	}
	path := apiPath("project", project, "statuses")
	var raw *[]struct {
		ID       wireID       `json:"id"`
		Name     string       `json:"name"`
		Subtask  bool         `json:"subtask"`
		Statuses []wireStatus `json:"statuses"`
	}
	if err := c.do(ctx, &request{op: op, method: http.MethodGet, path: path, out: &raw}); err != nil {
		return nil, err
	}
	malformed := func(detail string) error {
		return &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodGet, Path: c.fullPath(path), Status: http.StatusOK, Detail: detail}
	}
	if raw == nil {
		return nil, malformed("project statuses is not an array")
	}
	if len(*raw) > maxProjectIssueTypes {
		return nil, malformed(fmt.Sprintf("more than %d issue types", maxProjectIssueTypes))
	}
	out := make([]IssueTypeStatuses, 0, len(*raw))
	for _, t := range *raw {
		if t.ID == "" {
			return nil, malformed("issue type without id")
		}
		its := IssueTypeStatuses{IssueType: IssueType{ID: string(t.ID), Name: t.Name, Subtask: t.Subtask}}
		for i := range t.Statuses {
			s := t.Statuses[i].status()
			if s.ID == "" && s.Name == "" {
				return nil, malformed("status without id or name")
			}
			its.Statuses = append(its.Statuses, *s)
		}
		out = append(out, its)
	}
	return out, nil
}
