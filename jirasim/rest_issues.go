package jirasim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

const (
	msgIssueNotFound = "Issue does not exist or you do not have permission to see it."
	msgNotADF        = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
	msgCreateDenied  = "You do not have permission to create issues in this project."
)

func fieldNotOnScreen(id string) string {
	return fmt.Sprintf("Field '%s' cannot be set. It is not on the appropriate screen, or unknown.", id)
}

// ---- myself, serverInfo, projects, fields ----

func (s *Sim) handleMyself(w http.ResponseWriter, _ *http.Request, c *call) {
	s.mu.RLock()
	u := s.renderUserLocked(c.rc, c.p.user+1)
	s.mu.RUnlock()
	u["locale"] = "en_US"
	u["groups"] = map[string]any{"size": 1, "items": []any{}}
	writeJSON(w, http.StatusOK, u)
}

func (s *Sim) handleServerInfo(w http.ResponseWriter, _ *http.Request, c *call) {
	info := map[string]any{"baseUrl": c.rc.base, "serverTitle": s.opts.SiteName, "serverTime": s.Now().Format(jiraTimeLayout)}
	if s.flavor == Cloud {
		info["deploymentType"] = "Cloud"
		info["version"] = "1001.0.0-SNAPSHOT"
		info["versionNumbers"] = []int{1001, 0, 0}
	} else {
		info["deploymentType"] = "Server"
		info["version"] = "9.12.0"
		info["versionNumbers"] = []int{9, 12, 0}
	}
	writeJSON(w, http.StatusOK, info)
}

func intParam(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, apiErr("The '%s' parameter must be an integer.", name)
	}
	return n, nil
}

// handleProjectSearch serves Cloud's paged project search; `total` is the visible-project count
// in O(1) (JIRA-NOTES.md §3.4).
func (s *Sim) handleProjectSearch(w http.ResponseWriter, r *http.Request, c *call) {
	startAt, err := intParam(r, "startAt", 0)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, []string{err.Error()}, nil)
		return
	}
	maxResults, err := intParam(r, "maxResults", 50)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, []string{err.Error()}, nil)
		return
	}
	if startAt < 0 {
		startAt = 0
	}
	if maxResults <= 0 {
		maxResults = 50
	}
	maxResults = min(maxResults, 100)
	s.mu.RLock()
	defer s.mu.RUnlock()
	var keys map[string]bool
	if ks := r.URL.Query()["keys"]; len(ks) > 0 {
		keys = map[string]bool{}
		for _, k := range ks {
			for _, kk := range strings.Split(k, ",") {
				keys[strings.ToUpper(strings.TrimSpace(kk))] = true
			}
		}
	}
	query := strings.ToLower(r.URL.Query().Get("query"))
	total := len(s.st.projects)
	values := []any{}
	if keys == nil && query == "" {
		for i := startAt; i < total && len(values) < maxResults; i++ {
			values = append(values, s.renderProjectLocked(c.rc, uint32(i), true))
		}
	} else {
		var match []uint32
		for i, p := range s.st.projects {
			if keys != nil && !keys[p.key] {
				continue
			}
			if query != "" && !strings.Contains(strings.ToLower(p.key), query) && !strings.Contains(strings.ToLower(p.name), query) {
				continue
			}
			match = append(match, uint32(i))
		}
		total = len(match)
		for i := startAt; i < total && len(values) < maxResults; i++ {
			values = append(values, s.renderProjectLocked(c.rc, match[i], true))
		}
	}
	isLast := startAt+len(values) >= total
	out := map[string]any{
		"self":       c.rc.api(fmt.Sprintf("project/search?startAt=%d&maxResults=%d", startAt, maxResults)),
		"maxResults": maxResults, "startAt": startAt, "total": total, "isLast": isLast, "values": values,
	}
	if !isLast {
		out["nextPage"] = c.rc.api(fmt.Sprintf("project/search?startAt=%d&maxResults=%d", startAt+len(values), maxResults))
	}
	writeJSON(w, http.StatusOK, out)
}

// handleProjectList serves GET /project: a plain array of every visible project. Data Center
// has no paged alternative, so the answer grows with the site (about 250 bytes a project); it is
// rendered once and kept until a project is added (projects are never renamed or removed here),
// as a server would cache it, so a large site's sync measures the client's share of that array
// rather than the simulator re-encoding it on every call.
func (s *Sim) handleProjectList(w http.ResponseWriter, _ *http.Request, c *call) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	body, err := s.projectList.get(c.rc, len(s.st.projects), func() ([]byte, error) {
		out := make([]any, 0, len(s.st.projects))
		for i := range s.st.projects {
			out = append(out, s.renderProjectLocked(c.rc, uint32(i), false))
		}
		return encodeJSON(out)
	})
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, []string{"internal error rendering the response"}, nil)
		return
	}
	writeRawJSON(w, http.StatusOK, body)
}

// projectListCache holds one encoded project list, keyed by how it was rendered (base URL, API
// version, flavor) and the number of projects.
type projectListCache struct {
	mu   sync.Mutex
	rc   rctx
	n    int
	body []byte
}

// get returns the cached body for (rc, n), rendering it with render on a miss. Callers hold
// Sim.mu for reading, so n cannot change while render runs.
func (c *projectListCache) get(rc rctx, n int, render func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.body != nil && c.rc == rc && c.n == n {
		return c.body, nil
	}
	body, err := render()
	if err != nil {
		return nil, err
	}
	c.rc, c.n, c.body = rc, n, body
	return body, nil
}

func (s *Sim) handleFields(w http.ResponseWriter, _ *http.Request, c *call) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []any
	for _, f := range systemFields {
		out = append(out, map[string]any{"id": f, "key": f, "name": systemFieldName(f), "custom": false, "orderable": true, "navigable": true, "searchable": true,
			"schema": systemSchema(f), "clauseNames": []string{f}})
	}
	for _, f := range s.st.fields {
		out = append(out, map[string]any{"id": f.ID, "key": f.ID, "name": f.Name, "custom": true, "orderable": true, "navigable": true, "searchable": true,
			"schema": customSchema(f), "clauseNames": []string{fmt.Sprintf("cf[%d]", f.num), f.Name}})
	}
	writeJSON(w, http.StatusOK, out)
}

func systemFieldName(f string) string {
	switch f {
	case "resolutiondate":
		return "Resolved"
	case "issuetype":
		return "Issue Type"
	}
	return strings.ToUpper(f[:1]) + f[1:]
}

func systemSchema(f string) map[string]any {
	t := map[string]string{
		"summary": "string", "description": "string", "status": "status", "resolution": "resolution", "resolutiondate": "datetime",
		"priority": "priority", "assignee": "user", "reporter": "user", "issuetype": "issuetype", "project": "project",
		"created": "datetime", "updated": "datetime", "labels": "array",
	}[f]
	out := map[string]any{"type": t, "system": f}
	if f == "labels" {
		out["items"] = "string"
	}
	return out
}

func customSchema(f *customField) map[string]any {
	out := map[string]any{"custom": f.schemaCustom(), "customId": f.num}
	switch f.Type {
	case FieldMultiSelect, FieldCheckboxes:
		out["type"], out["items"] = "array", "option"
	case FieldSelect:
		out["type"] = "option"
	case FieldLabels:
		out["type"], out["items"] = "array", "string"
	default:
		out["type"] = "string"
	}
	return out
}

// ---- get issue ----

func (s *Sim) handleGetIssue(key string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		idx, ok := s.st.findIssue(key)
		if !ok {
			writeErrors(w, http.StatusNotFound, []string{msgIssueNotFound}, nil)
			return
		}
		fs := parseFieldSel(r.URL.Query()["fields"], "*all")
		bean := s.renderIssueLocked(c.rc, idx, fs)
		if _, has := bean["fields"]; !has {
			bean = map[string]any{"id": issueID(idx), "self": c.rc.api("issue/" + issueID(idx)), "key": s.st.issueKey(idx), "fields": map[string]any{}}
		}
		writeJSON(w, http.StatusOK, bean)
	}
}

// ---- create issue ----

type textMode uint8

const (
	textADF textMode = iota
	textString
	textEither
)

// parseCustomValue validates a custom-field input value against its type (JIRA-NOTES.md §4.2/4.3);
// it returns a Jira-style field error message on failure.
func parseCustomValue(f *customField, raw json.RawMessage, mode textMode) (cfValue, string) {
	switch f.Type {
	case FieldMultiSelect, FieldCheckboxes:
		var items []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return cfValue{}, "data was not an array"
		}
		var v cfValue
		for _, it := range items {
			id, msg := optionRef(f, it)
			if msg != "" {
				return cfValue{}, msg
			}
			if !slices.Contains(v.options, id) {
				v.options = append(v.options, id)
			}
		}
		return v, ""
	case FieldSelect:
		var it map[string]json.RawMessage
		if err := json.Unmarshal(raw, &it); err != nil || it == nil {
			return cfValue{}, "data was not an object"
		}
		id, msg := optionRef(f, it)
		if msg != "" {
			return cfValue{}, msg
		}
		return cfValue{options: []string{id}}, ""
	case FieldLabels:
		var ls []string
		if err := json.Unmarshal(raw, &ls); err != nil {
			return cfValue{}, "data was not an array"
		}
		for _, l := range ls {
			if msg := labelProblem(l); msg != "" {
				return cfValue{}, msg
			}
		}
		return cfValue{strs: ls}, ""
	case FieldTextField:
		var t string
		if err := json.Unmarshal(raw, &t); err != nil {
			return cfValue{}, "Operation value must be a string"
		}
		if utf8.RuneCountInString(t) > 255 {
			return cfValue{}, "The entered text is too long. It exceeds the allowed limit of 255 characters."
		}
		return cfValue{text: t}, ""
	case FieldTextArea:
		var t string
		if err := json.Unmarshal(raw, &t); err == nil {
			if mode == textADF {
				return cfValue{}, msgNotADF
			}
			return cfValue{text: t}, ""
		}
		if mode == textString {
			return cfValue{}, "Operation value must be a string"
		}
		if _, ok := parseADF(raw); !ok {
			return cfValue{}, msgNotADF
		}
		return cfValue{adf: append(json.RawMessage(nil), raw...)}, ""
	}
	return cfValue{}, "unsupported field type"
}

// optionRef resolves {"value":..} or {"id":..} (id as string or number) to an option id.
func optionRef(f *customField, it map[string]json.RawMessage) (string, string) {
	if raw, ok := it["id"]; ok {
		id := strings.Trim(string(raw), `"`)
		if _, ok := f.optByID[id]; !ok {
			return "", fmt.Sprintf("Option id '%s' is not valid", id)
		}
		return id, ""
	}
	if raw, ok := it["value"]; ok {
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", "Option value must be a string"
		}
		for _, o := range f.Options {
			if o.Value == v {
				return o.ID, ""
			}
		}
		return "", fmt.Sprintf("Option value '%s' is not valid", v)
	}
	return "", "Option must be specified by 'value' or 'id'"
}

func labelProblem(l string) string {
	switch {
	case l == "":
		return "Labels must not be empty."
	case strings.ContainsAny(l, " \t\n\r"):
		return fmt.Sprintf("The label '%s' contains spaces which is invalid.", l)
	case utf8.RuneCountInString(l) > 255:
		return fmt.Sprintf("The label '%s' exceeds the maximum length for a single label of 255 characters.", l)
	}
	return ""
}

// idOrName reads {"id":..}, {"key":..} or {"name":..} references.
func idOrName(raw json.RawMessage) (string, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return "", false
	}
	for _, k := range []string{"id", "key", "name", "accountId"} {
		if v, ok := m[k]; ok {
			return strings.Trim(string(v), `"`), true
		}
	}
	return "", false
}

// isCreateField reports whether a field id can appear on a create screen.
func (st *store) isCreateField(id string) bool {
	switch id {
	case "summary", "issuetype", "project", "description", "labels", "priority", "assignee", "reporter":
		return true
	}
	_, ok := st.fieldByID[id]
	return ok
}

// handleCreateIssue validates like Jira's create: ADF on v3, strings on v2/DC, option values
// against allowed values, screen membership and required fields, project permission.
func (s *Sim) handleCreateIssue(w http.ResponseWriter, r *http.Request, c *call) {
	var body struct {
		Fields map[string]json.RawMessage `json:"fields"`
		Update map[string]json.RawMessage `json:"update"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Fields == nil {
		writeErrors(w, http.StatusBadRequest, []string{"Issue fields are required."}, nil)
		return
	}
	mode := textString
	if c.rc.v3() {
		mode = textADF
	}
	s.mu.Lock()
	st := s.st
	errs := map[string]string{}
	in := issueInput{priority: prMedium, status: stToDo, reporter: c.p.user + 1}
	pRef, ok := idOrName(body.Fields["project"])
	if !ok {
		errs["project"] = "Specify a valid project ID or key"
	} else if in.project, ok = st.findProject(pRef); !ok {
		errs["project"] = "valid project is required"
	}
	if tRef, ok := idOrName(body.Fields["issuetype"]); !ok {
		errs["issuetype"] = "issue type is required"
	} else if in.itype, ok = lookupIssueType(tRef); !ok {
		errs["issuetype"] = "valid issue type is required"
	}
	if len(errs) > 0 {
		s.mu.Unlock()
		writeErrors(w, http.StatusBadRequest, nil, errs)
		return
	}
	if st.projects[in.project].createForbidden {
		s.mu.Unlock()
		writeErrors(w, http.StatusForbidden, []string{msgCreateDenied}, nil)
		return
	}
	for id := range body.Fields {
		if _, dup := body.Update[id]; dup {
			errs[id] = fmt.Sprintf("Field '%s' cannot be set in both 'fields' and 'update'.", id)
		}
	}
	provided := map[string]bool{}
	for id, raw := range body.Fields {
		if string(raw) == "null" {
			continue
		}
		provided[id] = true
		switch id {
		case "project", "issuetype":
		case "summary":
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				errs[id] = "Operation value must be a string"
			} else {
				in.summary = v
			}
		case "description":
			var v string
			if err := json.Unmarshal(raw, &v); err == nil {
				if mode == textADF {
					errs[id] = msgNotADF
				} else {
					in.descText = v
				}
			} else if mode == textString {
				errs[id] = "Operation value must be a string"
			} else if doc, ok := parseADF(raw); !ok {
				errs[id] = msgNotADF
			} else {
				in.descADF = append(json.RawMessage(nil), raw...)
				in.descText = ""
				_ = doc
			}
		case "labels":
			var ls []string
			if err := json.Unmarshal(raw, &ls); err != nil {
				errs[id] = "data was not an array"
				break
			}
			for _, l := range ls {
				if msg := labelProblem(l); msg != "" {
					errs[id] = msg
					break
				}
			}
			in.labels = ls
		case "priority":
			ref, ok := idOrName(raw)
			if !ok {
				errs[id] = "Could not find valid 'id' or 'name' in priority object."
			} else if in.priority, ok = lookupPriority(ref); !ok {
				errs[id] = fmt.Sprintf("The priority selected is invalid: %s", ref)
			}
		case "assignee", "reporter":
			ref, ok := idOrName(raw)
			var u uint32
			if ok {
				u, ok = st.findUser(ref)
			}
			if !ok {
				errs[id] = fmt.Sprintf("Specify a valid user for the %s field.", id)
				break
			}
			if id == "assignee" {
				in.assignee = u + 1
			} else {
				in.reporter = u + 1
			}
		default:
			f, ok := st.fieldByID[id]
			if !ok || !f.onType(in.itype) {
				errs[id] = fieldNotOnScreen(id)
				break
			}
			v, msg := parseCustomValue(f, raw, mode)
			if msg != "" {
				errs[id] = msg
				break
			}
			if in.custom == nil {
				in.custom = map[string]cfValue{}
			}
			in.custom[id] = v
		}
	}
	if strings.TrimSpace(in.summary) == "" && errs["summary"] == "" {
		errs["summary"] = "You must specify a summary of the issue."
	} else if utf8.RuneCountInString(in.summary) > 255 {
		errs["summary"] = "Summary must be less than 255 characters."
	}
	for k := range st.required {
		if k.project == in.project && k.itype == in.itype && !provided[k.field] && errs[k.field] == "" {
			errs[k.field] = st.fieldDisplayName(k.field) + " is required."
		}
	}
	if len(errs) > 0 {
		s.mu.Unlock()
		writeErrors(w, http.StatusBadRequest, nil, errs)
		return
	}
	in.created = s.nowMs()
	idx, msgs := s.createLocked(in, c.p.user, false)
	key := st.issueKey(idx)
	s.mu.Unlock()
	s.hooks.enqueue(msgs)
	writeJSON(w, http.StatusCreated, map[string]any{"id": issueID(idx), "key": key, "self": c.rc.api("issue/" + issueID(idx))})
}

func (st *store) fieldDisplayName(id string) string {
	if f, ok := st.fieldByID[id]; ok {
		return f.Name
	}
	return systemFieldName(id)
}

// ---- createmeta ----

func pageParams(w http.ResponseWriter, r *http.Request, limit int) (int, int, bool) {
	startAt, err := intParam(r, "startAt", 0)
	if err == nil && startAt < 0 {
		err = apiErr("The 'startAt' parameter must not be negative.")
	}
	if err != nil {
		writeErrors(w, http.StatusBadRequest, []string{err.Error()}, nil)
		return 0, 0, false
	}
	maxResults, err := intParam(r, "maxResults", 50)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, []string{err.Error()}, nil)
		return 0, 0, false
	}
	if maxResults > limit {
		writeErrors(w, http.StatusBadRequest, []string{fmt.Sprintf("Parameter 'maxResults' must not exceed the limit '%d'", limit)}, nil)
		return 0, 0, false
	}
	if maxResults <= 0 {
		maxResults = 50
	}
	return startAt, maxResults, true
}

func (s *Sim) handleCreateMetaTypes(projectRef string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		startAt, maxResults, ok := pageParams(w, r, 200)
		if !ok {
			return
		}
		s.mu.RLock()
		_, found := s.st.findProject(projectRef)
		s.mu.RUnlock()
		if !found {
			writeErrors(w, http.StatusNotFound, []string{fmt.Sprintf("No project could be found with key '%s'.", projectRef)}, nil)
			return
		}
		var all []any
		for t := range numIssueTypes {
			m := renderIssueType(c.rc, t)
			m["untranslatedName"] = issueTypes[t].name
			all = append(all, m)
		}
		s.writeMetaPage(w, c, all, startAt, maxResults, "issueTypes")
	}
}

func (s *Sim) writeMetaPage(w http.ResponseWriter, _ *call, all []any, startAt, maxResults int, cloudKey string) {
	page := []any{}
	if startAt < len(all) {
		page = all[startAt:min(len(all), startAt+maxResults)]
	}
	out := map[string]any{"maxResults": maxResults, "startAt": startAt, "total": len(all)}
	if s.flavor == DataCenter {
		// DC 8.4+ pages createmeta under "values" with isLast.
		out["values"] = page
		out["isLast"] = startAt+len(page) >= len(all)
	} else {
		out[cloudKey] = page
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Sim) handleCreateMetaFields(projectRef, typeRef string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		startAt, maxResults, ok := pageParams(w, r, 200)
		if !ok {
			return
		}
		s.mu.RLock()
		defer s.mu.RUnlock()
		st := s.st
		p, found := st.findProject(projectRef)
		if !found {
			writeErrors(w, http.StatusNotFound, []string{fmt.Sprintf("No project could be found with key '%s'.", projectRef)}, nil)
			return
		}
		t, found := lookupIssueType(typeRef)
		if !found || issueTypes[t].id != typeRef {
			writeErrors(w, http.StatusNotFound, []string{fmt.Sprintf("Issue type with id '%s' does not exist for project '%s'.", typeRef, st.projects[p].key)}, nil)
			return
		}
		all := s.createMetaFieldsLocked(c.rc, p, t)
		s.writeMetaPage(w, c, all, startAt, maxResults, "fields")
	}
}

func (s *Sim) createMetaFieldsLocked(rc rctx, p uint32, t uint8) []any {
	st := s.st
	req := func(id string, base bool) bool { return base || st.required[reqKey{p, t, id}] }
	field := func(id, name string, required, hasDefault bool, ops []string, schema map[string]any) map[string]any {
		return map[string]any{"fieldId": id, "key": id, "name": name, "required": required, "hasDefaultValue": hasDefault, "operations": ops, "schema": schema}
	}
	var out []any
	out = append(out, field("summary", "Summary", true, false, []string{"set"}, systemSchema("summary")))
	it := field("issuetype", "Issue Type", true, false, []string{}, systemSchema("issuetype"))
	it["allowedValues"] = []any{renderIssueType(rc, t)}
	out = append(out, it)
	pr := field("project", "Project", true, false, []string{"set"}, systemSchema("project"))
	pr["allowedValues"] = []any{s.renderProjectLocked(rc, p, false)}
	out = append(out, pr)
	out = append(out, field("reporter", "Reporter", req("reporter", false), true, []string{"set"}, systemSchema("reporter")))
	out = append(out, field("assignee", "Assignee", req("assignee", false), false, []string{"set"}, systemSchema("assignee")))
	out = append(out, field("description", "Description", req("description", false), false, []string{"set"}, systemSchema("description")))
	lb := field("labels", "Labels", req("labels", false), false, []string{"add", "set", "remove"}, systemSchema("labels"))
	lb["autoCompleteUrl"] = rc.api("label/suggest?query=")
	out = append(out, lb)
	pf := field("priority", "Priority", req("priority", false), true, []string{"set"}, systemSchema("priority"))
	var pv []any
	for i := range numPriorities {
		pv = append(pv, renderPriority(rc, i))
	}
	pf["allowedValues"] = pv
	pf["defaultValue"] = renderPriority(rc, prMedium)
	out = append(out, pf)
	for _, f := range st.fields {
		if !f.onType(t) {
			continue
		}
		ops := []string{"set"}
		if f.Type == FieldMultiSelect || f.Type == FieldCheckboxes || f.Type == FieldLabels {
			ops = []string{"add", "set", "remove"}
		}
		m := field(f.ID, f.Name, req(f.ID, false), false, ops, customSchema(f))
		if len(f.Options) > 0 {
			var av []any
			for _, o := range f.Options {
				av = append(av, map[string]string{"self": rc.base + "/rest/api/2/customFieldOption/" + o.ID, "value": o.Value, "id": o.ID})
			}
			m["allowedValues"] = av
		}
		out = append(out, m)
	}
	return out
}

// ---- transitions ----

func (s *Sim) renderTransitionLocked(rc rctx, t *transitionDef, withFields bool) map[string]any {
	m := map[string]any{
		"id": t.id, "name": t.name, "to": renderStatus(rc, t.to),
		"hasScreen": t.needsResolution, "isGlobal": false, "isInitial": false, "isAvailable": true, "isConditional": false, "isLooped": false,
	}
	if withFields {
		fields := map[string]any{}
		if t.needsResolution {
			var av []any
			for i := range resolutions {
				av = append(av, renderResolution(rc, uint8(i+1)))
			}
			fields["resolution"] = map[string]any{
				"required": true, "schema": map[string]any{"type": "resolution", "system": "resolution"},
				"name": "Resolution", "key": "resolution", "hasDefaultValue": false, "operations": []string{"set"}, "allowedValues": av,
			}
		}
		m["fields"] = fields
	}
	return m
}

func (s *Sim) handleGetTransitions(key string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		idx, ok := s.st.findIssue(key)
		if !ok {
			writeErrors(w, http.StatusNotFound, []string{msgIssueNotFound}, nil)
			return
		}
		withFields := strings.Contains(r.URL.Query().Get("expand"), "transitions.fields")
		only := r.URL.Query().Get("transitionId")
		out := []any{}
		for _, t := range transitionsFrom(s.st.issues[idx].status) {
			if only != "" && t.id != only {
				continue
			}
			out = append(out, s.renderTransitionLocked(c.rc, t, withFields))
		}
		writeJSON(w, http.StatusOK, map[string]any{"expand": "transitions", "transitions": out})
	}
}

func (s *Sim) handleDoTransition(key string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		var body struct {
			Transition map[string]json.RawMessage `json:"transition"`
			Fields     map[string]json.RawMessage `json:"fields"`
			Update     map[string]json.RawMessage `json:"update"`
		}
		s.mu.RLock()
		_, exists := s.st.findIssue(key)
		s.mu.RUnlock()
		if !exists {
			writeErrors(w, http.StatusNotFound, []string{msgIssueNotFound}, nil)
			return
		}
		if !decodeBody(w, r, &body) {
			return
		}
		raw, ok := body.Transition["id"]
		if !ok {
			writeErrors(w, http.StatusBadRequest, []string{"Missing 'transition' identifier"}, nil)
			return
		}
		tid := strings.Trim(string(raw), `"`)
		s.mu.Lock()
		idx, ok := s.st.findIssue(key)
		if !ok {
			s.mu.Unlock()
			writeErrors(w, http.StatusNotFound, []string{msgIssueNotFound}, nil)
			return
		}
		var t *transitionDef
		for _, cand := range transitionsFrom(s.st.issues[idx].status) {
			if cand.id == tid {
				t = cand
			}
		}
		if t == nil {
			s.mu.Unlock()
			writeErrors(w, http.StatusBadRequest, []string{fmt.Sprintf("Transition id '%s' is not valid for this issue.", tid)}, nil)
			return
		}
		errs := map[string]string{}
		var res uint8
		keys := make([]string, 0, len(body.Fields))
		for k := range body.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, id := range keys {
			if id != "resolution" || !t.needsResolution {
				errs[id] = fieldNotOnScreen(id)
				continue
			}
			ref, ok := idOrName(body.Fields[id])
			if !ok {
				errs[id] = "Could not find valid 'id' or 'name' in resolution object."
				continue
			}
			if res, ok = lookupResolution(ref); !ok {
				errs[id] = fmt.Sprintf("Resolution '%s' is not valid.", ref)
			}
		}
		if t.needsResolution && res == resNone && errs["resolution"] == "" {
			errs["resolution"] = "Resolution is required."
		}
		for id := range body.Update {
			if id != "comment" {
				errs[id] = fieldNotOnScreen(id)
			}
		}
		if len(errs) > 0 {
			s.mu.Unlock()
			writeErrors(w, http.StatusBadRequest, nil, errs)
			return
		}
		msgs := s.transitionLocked(idx, t.to, res, c.p.user)
		s.mu.Unlock()
		s.hooks.enqueue(msgs)
		w.WriteHeader(http.StatusNoContent)
	}
}
