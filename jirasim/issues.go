package jirasim

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// issueInput is a validated issue to create.
type issueInput struct {
	project  uint32
	itype    uint8
	summary  string
	descText string
	descADF  json.RawMessage
	labels   []string
	priority uint8
	reporter uint32 // user index + 1
	assignee uint32 // user index + 1
	custom   map[string]cfValue
	status   uint8
	res      uint8
	created  int64
	resolved int64
}

// createLocked stores a new issue and prepares its jira:issue_created deliveries.
func (s *Sim) createLocked(in issueInput, actor uint32, silent bool) (uint32, []outMsg) {
	st := s.st
	is := issue{
		created:  in.created,
		updated:  in.created,
		summary:  in.summary,
		project:  in.project,
		labels:   st.internLabels(in.labels),
		reporter: in.reporter,
		assignee: in.assignee,
		itype:    in.itype,
		status:   in.status,
		res:      in.res,
		priority: in.priority,
	}
	if statuses[in.status].cat == catDone {
		is.resolved = in.resolved
		if is.resolved == 0 {
			is.resolved = in.created
		}
	}
	if in.descText != "" || in.descADF != nil || len(in.custom) > 0 {
		is.ext = &issueExt{descText: in.descText, descADF: in.descADF, custom: in.custom}
	}
	idx := st.appendIssue(is)
	if silent {
		return idx, nil
	}
	return idx, s.hooks.prepareLocked(issueEvent{name: "jira:issue_created", typeName: "issue_created", idx: idx, actor: actor})
}

// transitionLocked moves an issue to a status, setting or clearing resolution and resolution
// date like Jira's default post-functions, records the changelog and prepares webhooks.
func (s *Sim) transitionLocked(idx uint32, to, res uint8, actor uint32) []outMsg {
	st := s.st
	is := &st.issues[idx]
	from, fromRes := is.status, is.res
	now := s.nowMs()
	st.indexRemove(idx)
	is.status = to
	if statuses[to].cat == catDone {
		if res == resNone {
			res = statuses[to].naturalRes
		}
		is.res = res
		is.resolved = now
	} else {
		is.res = resNone
		is.resolved = 0
	}
	is.updated = now
	st.indexAdd(idx)
	st.touch(idx, now)

	var items []ChangeItem
	if is.res != fromRes {
		items = append(items, resolutionChange(fromRes, is.res))
	}
	items = append(items, ChangeItem{
		Field: "status", FieldType: "jira", FieldID: "status",
		From: strPtr(statuses[from].id), FromString: strPtr(statuses[from].name),
		To: strPtr(statuses[to].id), ToString: strPtr(statuses[to].name),
	})
	cg := s.addChangelogLocked(idx, actor, now, items)
	typeName := "issue_generic"
	if s.flavor == DataCenter {
		switch {
		case statuses[to].cat == catDone && statuses[from].cat != catDone:
			typeName = "issue_resolved"
		case statuses[from].cat == catDone && statuses[to].cat != catDone:
			typeName = "issue_reopened"
		}
	}
	return s.hooks.prepareLocked(issueEvent{name: "jira:issue_updated", typeName: typeName, idx: idx, actor: actor, changelog: cg})
}

func resolutionChange(from, to uint8) ChangeItem {
	ci := ChangeItem{Field: "resolution", FieldType: "jira", FieldID: "resolution"}
	if from != resNone {
		ci.From, ci.FromString = strPtr(resolutions[from-1].id), strPtr(resolutions[from-1].name)
	}
	if to != resNone {
		ci.To, ci.ToString = strPtr(resolutions[to-1].id), strPtr(resolutions[to-1].name)
	}
	return ci
}

func strPtr(s string) *string { return &s }

func (s *Sim) addChangelogLocked(idx, actor uint32, at int64, items []ChangeItem) *changeGroup {
	st := s.st
	is := &st.issues[idx]
	if is.ext == nil {
		is.ext = &issueExt{}
	}
	st.changeSeq++
	cg := changeGroup{id: st.changeSeq, author: actor + 1, created: at, items: items}
	is.ext.changelog = append(is.ext.changelog, cg)
	return &is.ext.changelog[len(is.ext.changelog)-1]
}

// editLocked applies a human edit (summary/labels) and prepares webhooks.
func (s *Sim) editLocked(idx uint32, e IssueEdit, actor uint32) ([]outMsg, error) {
	st := s.st
	is := &st.issues[idx]
	now := s.nowMs()
	var items []ChangeItem
	if e.Summary != nil && *e.Summary != st.summary(idx) {
		if strings.TrimSpace(*e.Summary) == "" {
			return nil, fmt.Errorf("edit %s: summary must not be empty", st.issueKey(idx))
		}
		items = append(items, ChangeItem{Field: "summary", FieldType: "jira", FieldID: "summary",
			FromString: strPtr(st.summary(idx)), ToString: strPtr(*e.Summary)})
	}
	var newSet uint32
	labelsChanged := false
	if e.Labels != nil {
		for _, l := range *e.Labels {
			if l == "" || strings.ContainsAny(l, " \t\n") {
				return nil, fmt.Errorf("edit %s: label %q must be non-empty without spaces", st.issueKey(idx), l)
			}
		}
		newSet = st.internLabels(*e.Labels)
		if newSet != is.labels {
			labelsChanged = true
			items = append(items, ChangeItem{Field: "labels", FieldType: "jira", FieldID: "labels",
				FromString: strPtr(strings.Join(st.labelStrings(is.labels), " ")),
				ToString:   strPtr(strings.Join(st.labelStrings(newSet), " "))})
		}
	}
	if len(items) == 0 {
		return nil, nil
	}
	st.indexRemove(idx)
	if e.Summary != nil {
		is.summary = *e.Summary
	}
	if labelsChanged {
		is.labels = newSet
	}
	is.updated = now
	st.indexAdd(idx)
	st.touch(idx, now)
	cg := s.addChangelogLocked(idx, actor, now, items)
	return s.hooks.prepareLocked(issueEvent{name: "jira:issue_updated", typeName: "issue_updated", idx: idx, actor: actor, changelog: cg}), nil
}

// ---- Go API ----

// AddIssue creates an issue as a human would in the UI (no REST validation beyond sanity), and
// sends jira:issue_created to matching webhooks unless spec.Silent.
func (s *Sim) AddIssue(spec IssueSpec) (Issue, error) {
	s.mu.Lock()
	in, err := s.specToInput(spec)
	if err != nil {
		s.mu.Unlock()
		return Issue{}, err
	}
	idx, msgs := s.createLocked(in, in.reporter-1, spec.Silent)
	out := s.snapshotLocked(idx)
	s.mu.Unlock()
	s.hooks.enqueue(msgs)
	return out, nil
}

func (s *Sim) specToInput(spec IssueSpec) (issueInput, error) {
	st := s.st
	p, ok := st.findProject(spec.Project)
	if !ok {
		return issueInput{}, fmt.Errorf("add issue: project %q: %w", spec.Project, ErrNotFound)
	}
	tn := spec.IssueType
	if tn == "" {
		tn = "Task"
	}
	t, ok := lookupIssueType(tn)
	if !ok {
		return issueInput{}, fmt.Errorf("add issue: issue type %q: %w", spec.IssueType, ErrNotFound)
	}
	if strings.TrimSpace(spec.Summary) == "" {
		return issueInput{}, fmt.Errorf("add issue: summary is required")
	}
	in := issueInput{project: p, itype: t, summary: spec.Summary, descText: spec.Description, priority: prMedium, status: stToDo}
	for _, l := range spec.Labels {
		if l == "" || strings.ContainsAny(l, " \t\n") {
			return issueInput{}, fmt.Errorf("add issue: label %q must be non-empty without spaces", l)
		}
	}
	in.labels = spec.Labels
	if spec.Status != "" {
		if in.status, ok = lookupStatus(spec.Status); !ok {
			return issueInput{}, fmt.Errorf("add issue: status %q: %w", spec.Status, ErrNotFound)
		}
	}
	if statuses[in.status].cat == catDone {
		in.res = statuses[in.status].naturalRes
		if spec.Resolution != "" {
			if in.res, ok = lookupResolution(spec.Resolution); !ok {
				return issueInput{}, fmt.Errorf("add issue: resolution %q: %w", spec.Resolution, ErrNotFound)
			}
		}
	} else if spec.Resolution != "" {
		return issueInput{}, fmt.Errorf("add issue: resolution %q needs a done-category status", spec.Resolution)
	}
	if spec.Priority != "" {
		if in.priority, ok = lookupPriority(spec.Priority); !ok {
			return issueInput{}, fmt.Errorf("add issue: priority %q: %w", spec.Priority, ErrNotFound)
		}
	}
	in.reporter = s.admin + 1
	if spec.Reporter != "" {
		u, ok := st.findUser(spec.Reporter)
		if !ok {
			return issueInput{}, fmt.Errorf("add issue: reporter %q: %w", spec.Reporter, ErrNotFound)
		}
		in.reporter = u + 1
	}
	if spec.Assignee != "" {
		u, ok := st.findUser(spec.Assignee)
		if !ok {
			return issueInput{}, fmt.Errorf("add issue: assignee %q: %w", spec.Assignee, ErrNotFound)
		}
		in.assignee = u + 1
	}
	if len(spec.CustomFields) > 0 {
		in.custom = map[string]cfValue{}
		for id, raw := range spec.CustomFields {
			f, ok := st.fieldByID[id]
			if !ok {
				return issueInput{}, fmt.Errorf("add issue: custom field %q: %w", id, ErrNotFound)
			}
			v, msg := parseCustomValue(f, raw, textEither)
			if msg != "" {
				return issueInput{}, fmt.Errorf("add issue: %s: %s", id, msg)
			}
			in.custom[id] = v
		}
	}
	now := s.Now()
	in.created = now.UnixMilli()
	if !spec.Created.IsZero() {
		in.created = spec.Created.UnixMilli()
	}
	if !spec.Resolved.IsZero() {
		in.resolved = spec.Resolved.UnixMilli()
	}
	return in, nil
}

// Issue returns a snapshot of an issue by key or id.
func (s *Sim) Issue(keyOrID string) (Issue, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	idx, ok := s.st.findIssue(keyOrID)
	if !ok {
		return Issue{}, false
	}
	return s.snapshotLocked(idx), true
}

// TransitionAsHuman moves an issue to the named status (by name or id) as the site admin would in
// the UI: the transition must exist from the current status, the resolution defaults to the
// status's natural one, and webhooks fire.
func (s *Sim) TransitionAsHuman(keyOrID, toStatus string) error {
	return s.TransitionAs("", keyOrID, toStatus, "")
}

// TransitionAs is TransitionAsHuman with an explicit actor (email/name; admin when empty) and
// resolution (name or id; natural one when empty).
func (s *Sim) TransitionAs(actor, keyOrID, toStatus, resolution string) error {
	s.mu.Lock()
	st := s.st
	idx, ok := st.findIssue(keyOrID)
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("transition %s: issue: %w", keyOrID, ErrNotFound)
	}
	to, ok := lookupStatus(toStatus)
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("transition %s: status %q: %w", keyOrID, toStatus, ErrNotFound)
	}
	u := s.admin
	if actor != "" {
		if u, ok = st.findUser(actor); !ok {
			s.mu.Unlock()
			return fmt.Errorf("transition %s: user %q: %w", keyOrID, actor, ErrNotFound)
		}
	}
	var res uint8
	if resolution != "" {
		if res, ok = lookupResolution(resolution); !ok {
			s.mu.Unlock()
			return fmt.Errorf("transition %s: resolution %q: %w", keyOrID, resolution, ErrNotFound)
		}
	}
	cur := st.issues[idx].status
	valid := slices.ContainsFunc(transitionsFrom(cur), func(t *transitionDef) bool { return t.to == to })
	if !valid {
		s.mu.Unlock()
		return fmt.Errorf("transition %s: no transition from %q to %q in the workflow", keyOrID, statuses[cur].name, statuses[to].name)
	}
	msgs := s.transitionLocked(idx, to, res, u)
	s.mu.Unlock()
	s.hooks.enqueue(msgs)
	return nil
}

// EditAsHuman changes summary and/or labels as a user in the UI would, firing jira:issue_updated.
func (s *Sim) EditAsHuman(keyOrID string, e IssueEdit) error {
	s.mu.Lock()
	idx, ok := s.st.findIssue(keyOrID)
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("edit %s: issue: %w", keyOrID, ErrNotFound)
	}
	msgs, err := s.editLocked(idx, e, s.admin)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.hooks.enqueue(msgs)
	return nil
}

func (s *Sim) snapshotLocked(idx uint32) Issue {
	st := s.st
	is := &st.issues[idx]
	out := Issue{
		ID:             issueID(idx),
		Key:            st.issueKey(idx),
		Project:        st.projects[is.project].key,
		IssueType:      issueTypes[is.itype].name,
		Summary:        st.summary(idx),
		Status:         statuses[is.status].name,
		StatusID:       statuses[is.status].id,
		StatusCategory: categories[statuses[is.status].cat].key,
		Resolution:     resolutionName(is.res),
		Priority:       priorities[is.priority].name,
		Labels:         st.labelStrings(is.labels),
		Created:        time.UnixMilli(is.created).UTC(),
		Updated:        time.UnixMilli(is.updated).UTC(),
	}
	if is.resolved != 0 {
		out.ResolutionDate = time.UnixMilli(is.resolved).UTC()
	}
	if is.reporter != 0 {
		out.Reporter = st.users[is.reporter-1].Email
	}
	if is.assignee != 0 {
		out.Assignee = st.users[is.assignee-1].Email
	}
	if is.ext != nil {
		out.Description = descriptionText(is.ext)
		out.DescriptionADF = is.ext.descADF
		if len(is.ext.custom) > 0 {
			out.CustomFields = map[string]any{}
			for id, v := range is.ext.custom {
				out.CustomFields[id] = s.renderCustomLocked(st.fieldByID[id], v, false)
			}
		}
		for _, cg := range is.ext.changelog {
			g := ChangeGroup{ID: strconv.FormatInt(cg.id, 10), Created: time.UnixMilli(cg.created).UTC(), Items: cg.items}
			if cg.author != 0 {
				g.Author = st.users[cg.author-1].Email
			}
			out.Changelog = append(out.Changelog, g)
		}
	}
	return out
}
