package jirasim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// This file renders Jira's JSON shapes (JIRA-NOTES.md §3.6): string ids, statusCategory with a
// numeric id, -0700 timestamps, v3 rich text as ADF and v2 rich text as strings.

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := encodeJSON(v)
	if err != nil {
		http.Error(w, `{"errorMessages":["internal error rendering the response"],"errors":{}}`, http.StatusInternalServerError)
		return
	}
	writeRawJSON(w, status, body)
}

// encodeJSON encodes v as Jira does: no HTML escaping, newline-terminated.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeRawJSON writes an already encoded JSON body.
func writeRawJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeErrors writes Jira's ErrorCollection (JIRA-NOTES.md §4.4).
func writeErrors(w http.ResponseWriter, status int, msgs []string, errs map[string]string) {
	if msgs == nil {
		msgs = []string{}
	}
	if errs == nil {
		errs = map[string]string{}
	}
	writeJSON(w, status, map[string]any{"errorMessages": msgs, "errors": errs})
}

// rctx carries what rendering depends on: the site URL, the API version of the request and the
// flavor.
type rctx struct {
	base   string
	ver    string // "2" or "3"
	flavor Flavor
}

func (r rctx) api(path string) string { return r.base + "/rest/api/" + r.ver + "/" + path }
func (r rctx) v3() bool               { return r.ver == "3" }

func (s *Sim) renderUserLocked(rc rctx, u uint32) map[string]any {
	if u == 0 {
		return nil
	}
	usr := s.st.users[u-1]
	avatars := map[string]string{"48x48": rc.base + "/avatars/48/" + usr.Key + ".png", "24x24": rc.base + "/avatars/24/" + usr.Key + ".png"}
	if rc.flavor == Cloud {
		return map[string]any{
			"self":         rc.api("user?accountId=" + usr.AccountID),
			"accountId":    usr.AccountID,
			"accountType":  "atlassian",
			"emailAddress": usr.Email,
			"avatarUrls":   avatars,
			"displayName":  usr.DisplayName,
			"active":       usr.Active,
			"timeZone":     usr.timeZone,
		}
	}
	return map[string]any{
		"self":         rc.api("user?username=" + usr.Name),
		"name":         usr.Name,
		"key":          usr.Key,
		"emailAddress": usr.Email,
		"avatarUrls":   avatars,
		"displayName":  usr.DisplayName,
		"active":       usr.Active,
		"timeZone":     usr.timeZone,
	}
}

func renderCategory(rc rctx, c uint8) map[string]any {
	cd := categories[c]
	return map[string]any{"self": rc.api("statuscategory/" + strconv.Itoa(cd.id)), "id": cd.id, "key": cd.key, "colorName": cd.color, "name": cd.name}
}

func renderStatus(rc rctx, st uint8) map[string]any {
	sd := statuses[st]
	return map[string]any{
		"self": rc.api("status/" + sd.id), "description": sd.desc, "iconUrl": rc.base + "/images/icons/statuses/generic.png",
		"name": sd.name, "id": sd.id, "statusCategory": renderCategory(rc, sd.cat),
	}
}

func renderIssueType(rc rctx, t uint8) map[string]any {
	td := issueTypes[t]
	return map[string]any{
		"self": rc.api("issuetype/" + td.id), "id": td.id, "description": td.desc,
		"iconUrl": rc.base + "/images/icons/issuetypes/" + strings.ToLower(td.name) + ".svg",
		"name":    td.name, "subtask": false, "hierarchyLevel": map[bool]int{true: 1, false: 0}[t == itEpic],
	}
}

func renderPriority(rc rctx, p uint8) map[string]any {
	pd := priorities[p]
	return map[string]any{"self": rc.api("priority/" + pd.id), "iconUrl": rc.base + "/images/icons/priorities/" + pd.icon, "name": pd.name, "id": pd.id}
}

func renderResolution(rc rctx, r uint8) any {
	if r == resNone {
		return nil
	}
	rd := resolutions[r-1]
	return map[string]any{"self": rc.api("resolution/" + rd.id), "id": rd.id, "description": rd.desc, "name": rd.name}
}

func (s *Sim) renderProjectLocked(rc rctx, p uint32, full bool) map[string]any {
	pr := s.st.projects[p]
	out := map[string]any{
		"self": rc.api("project/" + projectID(p)), "id": projectID(p), "key": pr.key, "name": pr.name,
		"projectTypeKey": "software", "simplified": false,
		"avatarUrls": map[string]string{"48x48": rc.base + "/avatars/project/" + pr.key + ".png"},
	}
	if full {
		out["expand"] = "description,lead,issueTypes,url,projectKeys,permissions,insight"
		out["isPrivate"] = false
		out["style"] = "classic"
		if rc.flavor == Cloud {
			out["entityId"] = "sim-" + projectID(p)
			out["uuid"] = "sim-" + projectID(p)
		}
	}
	return out
}

// renderCustomLocked renders a stored custom-field value; v3 renders textareas as ADF.
func (s *Sim) renderCustomLocked(f *customField, v cfValue, v3 bool) any {
	if f == nil {
		return nil
	}
	switch f.Type {
	case FieldMultiSelect, FieldCheckboxes:
		out := make([]map[string]string, 0, len(v.options))
		for _, id := range v.options {
			out = append(out, map[string]string{"self": s.BaseURL() + "/rest/api/2/customFieldOption/" + id, "value": f.optByID[id], "id": id})
		}
		return out
	case FieldSelect:
		if len(v.options) == 0 {
			return nil
		}
		id := v.options[0]
		return map[string]string{"self": s.BaseURL() + "/rest/api/2/customFieldOption/" + id, "value": f.optByID[id], "id": id}
	case FieldLabels:
		return append([]string{}, v.strs...)
	case FieldTextField:
		return v.text
	case FieldTextArea:
		if v3 {
			if v.adf != nil {
				return v.adf
			}
			return textToADF(v.text)
		}
		return v.plainText()
	}
	return nil
}

// fieldSel is a parsed `fields` request parameter.
type fieldSel struct {
	all     bool
	set     map[string]bool
	exclude map[string]bool
}

// parseFieldSel parses a fields list; def is used when the parameter is absent.
func parseFieldSel(list []string, def string) fieldSel {
	if len(list) == 0 {
		list = []string{def}
	}
	fs := fieldSel{set: map[string]bool{}, exclude: map[string]bool{}}
	for _, item := range list {
		for _, f := range strings.Split(item, ",") {
			f = strings.TrimSpace(f)
			switch {
			case f == "":
			case f == "*all" || f == "*navigable":
				fs.all = true
			case strings.HasPrefix(f, "-"):
				fs.exclude[strings.TrimPrefix(f, "-")] = true
			default:
				fs.set[f] = true
			}
		}
	}
	return fs
}

func (fs fieldSel) wants(f string) bool {
	if fs.exclude[f] {
		return false
	}
	return fs.all || fs.set[f]
}

// wantsAnyField reports whether issue fields beyond id/key are requested.
func (fs fieldSel) wantsAnyField() bool {
	if fs.all {
		return true
	}
	for f := range fs.set {
		if f != "id" && f != "key" {
			return true
		}
	}
	return false
}

var systemFields = []string{"summary", "status", "resolution", "resolutiondate", "priority", "labels", "assignee", "reporter", "issuetype", "project", "created", "updated", "description"}

// renderFieldsLocked renders the selected fields of an issue.
func (s *Sim) renderFieldsLocked(rc rctx, idx uint32, fs fieldSel) map[string]any {
	st := s.st
	is := &st.issues[idx]
	out := map[string]any{}
	for _, f := range systemFields {
		if !fs.wants(f) {
			continue
		}
		switch f {
		case "summary":
			out[f] = st.summary(idx)
		case "status":
			out[f] = renderStatus(rc, is.status)
		case "resolution":
			out[f] = renderResolution(rc, is.res)
		case "resolutiondate":
			if is.resolved != 0 {
				out[f] = fmtMillis(is.resolved)
			} else {
				out[f] = nil
			}
		case "priority":
			out[f] = renderPriority(rc, is.priority)
		case "labels":
			out[f] = st.labelStrings(is.labels)
		case "assignee":
			out[f] = s.renderUserLocked(rc, is.assignee)
		case "reporter":
			out[f] = s.renderUserLocked(rc, is.reporter)
		case "issuetype":
			out[f] = renderIssueType(rc, is.itype)
		case "project":
			out[f] = s.renderProjectLocked(rc, is.project, false)
		case "created":
			out[f] = fmtMillis(is.created)
		case "updated":
			out[f] = fmtMillis(is.updated)
		case "description":
			out[f] = renderDescription(rc, is.ext)
		}
	}
	for _, cf := range st.fields {
		if !fs.wants(cf.ID) {
			continue
		}
		var v any
		if is.ext != nil {
			if val, ok := is.ext.custom[cf.ID]; ok {
				v = s.renderCustomLocked(cf, val, rc.v3())
			}
		}
		out[cf.ID] = v
	}
	return out
}

func renderDescription(rc rctx, ext *issueExt) any {
	if ext == nil || (ext.descText == "" && ext.descADF == nil) {
		return nil
	}
	if rc.v3() {
		if ext.descADF != nil {
			return ext.descADF
		}
		return textToADF(ext.descText)
	}
	return descriptionText(ext)
}

// renderIssueLocked renders an IssueBean. idOnly renders {"id"} (and key when asked), the shape
// /search/jql returns with its default fields=id.
func (s *Sim) renderIssueLocked(rc rctx, idx uint32, fs fieldSel) map[string]any {
	if !fs.wantsAnyField() {
		out := map[string]any{"id": issueID(idx)}
		if fs.set["key"] {
			out["key"] = s.st.issueKey(idx)
		}
		return out
	}
	return map[string]any{
		"expand": "operations,versionedRepresentations,editmeta,changelog,renderedFields",
		"id":     issueID(idx),
		"self":   rc.api("issue/" + issueID(idx)),
		"key":    s.st.issueKey(idx),
		"fields": s.renderFieldsLocked(rc, idx, fs),
	}
}
