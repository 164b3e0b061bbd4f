package jira

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Transition is a workflow transition available from an issue's current status.
type Transition struct {
	ID string
	// Name is the transition's own name ("Close Issue"), which says nothing reliable about where
	// it goes; match on To instead.
	Name string
	// To is the target status. Real data contains transitions without one, so it may be nil.
	To        *Status
	HasScreen bool
	// Fields are the transition screen's fields by id (requested with expand=transitions.fields).
	Fields map[string]FieldMeta
}

// Transitions lists the transitions available from the issue's current status, with their screen
// fields. An empty list means none is available (or the credential may not transition the issue).
func (c *Client) Transitions(ctx context.Context, key string) ([]Transition, error) {
	const op = "transitions.get"
	if !validIssueRef(key) {
		return nil, configError(op, "invalid issue key or id")
	}
	var res struct {
		Transitions *[]struct {
			ID        wireID                   `json:"id"`
			Name      string                   `json:"name"`
			To        *wireStatus              `json:"to"`
			HasScreen bool                     `json:"hasScreen"`
			Fields    map[string]wireFieldMeta `json:"fields"`
		} `json:"transitions"`
	}
	q := url.Values{"expand": {"transitions.fields"}}
	if err := c.do(ctx, &request{op: op, method: http.MethodGet, path: apiPath("issue", key, "transitions"), query: q, out: &res}); err != nil {
		return nil, err
	}
	if res.Transitions == nil {
		return nil, &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodGet, Path: c.fullPath(apiPath("issue", key, "transitions")), Status: http.StatusOK, Detail: "no transitions array"}
	}
	out := make([]Transition, 0, len(*res.Transitions))
	for _, t := range *res.Transitions {
		if t.ID == "" {
			return nil, &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodGet, Path: c.fullPath(apiPath("issue", key, "transitions")), Status: http.StatusOK, Detail: "transition without id"}
		}
		tr := Transition{ID: string(t.ID), Name: t.Name, To: t.To.status(), HasScreen: t.HasScreen}
		if len(t.Fields) > 0 {
			tr.Fields = make(map[string]FieldMeta, len(t.Fields))
			for id, f := range t.Fields {
				tr.Fields[id] = f.meta(id)
			}
		}
		out = append(out, tr)
	}
	return out, nil
}

// Target is the status an issue should end up in. At least one of StatusID, StatusName and
// CategoryKey is required; they are tried in that order.
type Target struct {
	StatusID   string
	StatusName string
	// CategoryKey is a status category key: "new", "indeterminate" or "done".
	CategoryKey string
	// Resolution (name or id) is set only when the chosen transition's screen has the resolution
	// field; many workflows set it in a post-function instead.
	Resolution string
}

func (t Target) String() string {
	var parts []string
	if t.StatusID != "" {
		parts = append(parts, "status id "+t.StatusID)
	}
	if t.StatusName != "" {
		parts = append(parts, fmt.Sprintf("status %q", t.StatusName))
	}
	if t.CategoryKey != "" {
		parts = append(parts, "category "+t.CategoryKey)
	}
	return strings.Join(parts, " / ")
}

// MatchedBy says how TransitionTo decided.
type MatchedBy string

// How a target was matched.
const (
	MatchedByStatusID    MatchedBy = "status_id"
	MatchedByStatusName  MatchedBy = "status_name"
	MatchedByCategoryKey MatchedBy = "category_key"
)

// TransitionResult reports what TransitionTo did.
type TransitionResult struct {
	// Changed is false when the issue was already in the target; no transition call was made.
	Changed bool
	From    Status
	// To is the status the issue was moved to (equal to From when unchanged).
	To             Status
	TransitionID   string
	TransitionName string
	MatchedBy      MatchedBy
	// ResolutionSet reports whether the resolution was sent with the transition.
	ResolutionSet bool
}

func (t Target) matchesStatus(s Status) (MatchedBy, bool) {
	switch {
	case t.StatusID != "" && s.ID == t.StatusID:
		return MatchedByStatusID, true
	case t.StatusName != "" && strings.EqualFold(s.Name, t.StatusName):
		return MatchedByStatusName, true
	}
	return "", false
}

// TransitionTo moves the issue to the target status by picking the transition whose target
// status matches — by to.id, then to.name (case-insensitive), then to.statusCategory.key — never
// by the transition's name. It makes no transition call when the issue is already there
// (Changed=false); an issue already in the target category counts as there when no exact id or
// name match is reachable. When no transition reaches the target, the error is
// KindTransitionUnavailable and names the current status and the reachable ones.
//
// Calls: GET issue (status), then GET transitions and POST transitions only when needed.
func (c *Client) TransitionTo(ctx context.Context, key string, target Target) (*TransitionResult, error) {
	const op = "transitions.do"
	if target.StatusID == "" && target.StatusName == "" && target.CategoryKey == "" {
		return nil, configError(op, "target status is empty")
	}
	issue, err := c.GetIssue(ctx, key, "status")
	if err != nil {
		return nil, err
	}
	if issue.Fields.Status == nil {
		return nil, &Error{Kind: KindMalformedResponse, Op: "issue.get", Detail: "issue " + key + " has no status"}
	}
	cur := *issue.Fields.Status
	unchanged := func(by MatchedBy) *TransitionResult {
		return &TransitionResult{From: cur, To: cur, MatchedBy: by}
	}
	if by, ok := target.matchesStatus(cur); ok {
		return unchanged(by), nil
	}
	inCategory := target.CategoryKey != "" && strings.EqualFold(cur.Category.Key, target.CategoryKey)
	if inCategory && target.StatusID == "" && target.StatusName == "" {
		return unchanged(MatchedByCategoryKey), nil
	}
	transitions, err := c.Transitions(ctx, key)
	if err != nil {
		return nil, err
	}
	chosen, by := pickTransition(transitions, target)
	if chosen == nil && inCategory {
		return unchanged(MatchedByCategoryKey), nil
	}
	if chosen == nil {
		return nil, &Error{Kind: KindTransitionUnavailable, Op: op, Detail: unreachableDetail(key, cur, target, transitions)}
	}
	body := map[string]any{"transition": map[string]string{"id": chosen.ID}}
	res := &TransitionResult{Changed: true, From: cur, To: *chosen.To, TransitionID: chosen.ID, TransitionName: chosen.Name, MatchedBy: by}
	if target.Resolution != "" {
		if _, onScreen := chosen.Fields["resolution"]; onScreen {
			if !validUTF8Printable(target.Resolution) {
				return nil, configError(op, "invalid resolution")
			}
			body["fields"] = map[string]any{"resolution": idOrName(target.Resolution, "name")}
			res.ResolutionSet = true
		}
	}
	err = c.do(ctx, &request{op: op, method: http.MethodPost, path: apiPath("issue", key, "transitions"), body: body})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func pickTransition(ts []Transition, t Target) (*Transition, MatchedBy) {
	tiers := []struct {
		by    MatchedBy
		match func(*Status) bool
	}{
		{MatchedByStatusID, func(s *Status) bool { return t.StatusID != "" && s.ID == t.StatusID }},
		{MatchedByStatusName, func(s *Status) bool { return t.StatusName != "" && strings.EqualFold(s.Name, t.StatusName) }},
		{MatchedByCategoryKey, func(s *Status) bool { return t.CategoryKey != "" && strings.EqualFold(s.Category.Key, t.CategoryKey) }},
	}
	for _, tier := range tiers {
		for i := range ts {
			if ts[i].To != nil && tier.match(ts[i].To) {
				return &ts[i], tier.by
			}
		}
	}
	return nil, ""
}

func unreachableDetail(key string, cur Status, target Target, ts []Transition) string {
	var reachable []string
	for _, t := range ts {
		if t.To != nil {
			reachable = append(reachable, strconv.Quote(t.To.Name))
		}
	}
	sort.Strings(reachable)
	d := fmt.Sprintf("issue %s cannot reach %s from its current status %q", key, target, cur.Name)
	if len(reachable) == 0 {
		return d + " (no transitions available: the workflow has none from here or the account lacks the Transition Issues permission)"
	}
	return d + " (reachable: " + strings.Join(reachable, ", ") + ")"
}

// DefaultMaxHops bounds the intermediate transitions MoveTo may take.
const DefaultMaxHops = 3

// MoveTo brings the issue to target like TransitionTo, but when the workflow has no direct
// transition it walks there the way a person would click through: each intermediate step takes
// a transition whose status category is closer to the target's (new → indeterminate → done, and
// back down to reopen), never revisiting a status, for at most maxHops intermediate steps
// (DefaultMaxHops when <= 0). Jira itself never chains transitions, and many workflows require
// passing through "In Progress" before "Done".
//
// An issue already in the target's category is only accepted as "there" when no path reaches the
// exact status id or name. Each step is a real transition, so a failure midway leaves the issue
// in an intermediate status; the error says where.
func (c *Client) MoveTo(ctx context.Context, key string, target Target, maxHops int) (*TransitionResult, error) {
	if maxHops <= 0 {
		maxHops = DefaultMaxHops
	}
	res, err := c.TransitionTo(ctx, key, target)
	exact := target.StatusID != "" || target.StatusName != ""
	if err == nil && (res.MatchedBy != MatchedByCategoryKey || !exact || res.Changed) {
		return res, nil
	}
	if err != nil && KindOf(err) != KindTransitionUnavailable {
		return nil, err
	}
	// The category-only fallback (or nothing at all) is what the direct attempt gives; look for
	// a path to the exact status before settling for it.
	fallback, firstErr := res, err
	tr, known := categoryRank(target.CategoryKey)
	if !known {
		return fallback, firstErr
	}
	var start *Status
	visited := map[string]bool{}
	for hop := 0; hop < maxHops; hop++ {
		issue, err := c.GetIssue(ctx, key, "status")
		if err != nil {
			return nil, err
		}
		if issue.Fields.Status == nil {
			return nil, &Error{Kind: KindMalformedResponse, Op: "issue.get", Detail: "issue " + key + " has no status"}
		}
		cur := *issue.Fields.Status
		if start == nil {
			s := cur
			start = &s
		}
		visited[cur.ID] = true
		ts, err := c.Transitions(ctx, key)
		if err != nil {
			return nil, err
		}
		step := pickStep(ts, cur, tr, visited)
		if step == nil {
			break
		}
		if err := c.do(ctx, &request{op: "transitions.do", method: http.MethodPost, path: apiPath("issue", key, "transitions"),
			body: map[string]any{"transition": map[string]string{"id": step.ID}}}); err != nil {
			return nil, err
		}
		res, err := c.TransitionTo(ctx, key, target)
		if err == nil && (res.MatchedBy != MatchedByCategoryKey || !exact || res.Changed) {
			res.From, res.Changed = *start, true
			return res, nil
		}
		if err != nil && KindOf(err) != KindTransitionUnavailable {
			return nil, err
		}
	}
	if fallback != nil && start != nil && fallback.From.ID != start.ID {
		// We moved away from a status that counted as "there" and found no path: say so.
		return nil, &Error{Kind: KindTransitionUnavailable, Op: "transitions.do",
			Detail: fmt.Sprintf("issue %s: no path to %s within %d steps from %q", key, target, maxHops, start.Name)}
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, firstErr
}

// categoryRank orders status categories along the usual workflow direction.
func categoryRank(key string) (int, bool) {
	switch strings.ToLower(key) {
	case "new":
		return 0, true
	case "indeterminate":
		return 1, true
	case "done":
		return 2, true
	}
	return 0, false
}

// pickStep chooses the next intermediate transition: the unvisited destination whose category is
// nearest the target's, preferring real progress (strictly nearer than the current status).
func pickStep(ts []Transition, cur Status, targetRank int, visited map[string]bool) *Transition {
	curRank, ok := categoryRank(cur.Category.Key)
	if !ok {
		return nil
	}
	dist := func(r int) int {
		if r > targetRank {
			return r - targetRank
		}
		return targetRank - r
	}
	var best *Transition
	bestDist := 1 << 30
	for i := range ts {
		to := ts[i].To
		if to == nil || visited[to.ID] || to.ID == cur.ID {
			continue
		}
		r, ok := categoryRank(to.Category.Key)
		if !ok {
			continue
		}
		d := dist(r)
		// Moving within the target's own category is never a useful intermediate step: the
		// direct attempt from there would already have matched.
		if d == 0 {
			continue
		}
		if d < bestDist {
			best, bestDist = &ts[i], d
		}
	}
	if best == nil {
		return nil
	}
	if bestDist >= dist(curRank) && curRank != targetRank {
		// No step gets closer; wandering away would not help.
		return nil
	}
	return best
}
