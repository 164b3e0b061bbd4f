package jirasim

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

var dynamicEvents = []string{"jira:issue_created", "jira:issue_updated", "jira:issue_deleted", "comment_created", "comment_updated", "comment_deleted", "issue_property_set", "issue_property_deleted"}

const msgNotApp = "The caller isn't an app."

// requireApp enforces that dynamic webhooks are for 3LO apps with manage:jira-webhook.
func requireApp(w http.ResponseWriter, c *call) bool {
	if c.p.kind != AuthBearerOAuth || c.p.g == nil {
		writeJSON(w, http.StatusForbidden, map[string]any{"errorMessages": []string{msgNotApp}, "errors": map[string]string{}, "status": 403})
		return false
	}
	if !c.p.g.has(ScopeManageWebhook) {
		writeJSON(w, http.StatusForbidden, map[string]any{"errorMessages": []string{"The app is not allowed to manage webhooks: the manage:jira-webhook scope was not granted."}, "errors": map[string]string{}, "status": 403})
		return false
	}
	return true
}

func (s *Sim) handleWebhookRegister(w http.ResponseWriter, r *http.Request, c *call) {
	if !requireApp(w, c) {
		return
	}
	var body struct {
		URL      string `json:"url"`
		Webhooks []struct {
			Events         []string `json:"events"`
			JQLFilter      *string  `json:"jqlFilter"`
			FieldIDsFilter []string `json:"fieldIdsFilter"`
		} `json:"webhooks"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	u, err := url.Parse(body.URL)
	if body.URL == "" || err != nil || u.Scheme == "" || u.Host == "" {
		writeErrors(w, http.StatusBadRequest, []string{"The webhook URL is invalid."}, nil)
		return
	}
	if len(body.Webhooks) == 0 {
		writeErrors(w, http.StatusBadRequest, []string{"At least one webhook must be specified."}, nil)
		return
	}
	clientID := c.p.g.clientID
	h := s.hooks
	h.mu.Lock()
	for _, reg := range h.regs {
		if reg.Kind == WebhookDynamic && reg.ClientID == clientID && reg.URL != body.URL {
			h.mu.Unlock()
			writeErrors(w, http.StatusBadRequest, []string{"Only a single URL per app is allowed to be registered."}, nil)
			return
		}
	}
	h.mu.Unlock()

	type result struct {
		CreatedWebhookID int64    `json:"createdWebhookId,omitempty"`
		Errors           []string `json:"errors,omitempty"`
	}
	results := make([]result, 0, len(body.Webhooks))
	expires := s.Now().Add(s.opts.WebhookTTL)
	for _, wh := range body.Webhooks {
		var problems []string
		if len(wh.Events) == 0 {
			problems = append(problems, "At least one event must be specified.")
		}
		for _, e := range wh.Events {
			if !slices.Contains(dynamicEvents, e) {
				problems = append(problems, fmt.Sprintf("The event %s is not supported.", e))
			}
		}
		var filter *compiledQuery
		if wh.JQLFilter == nil || strings.TrimSpace(*wh.JQLFilter) == "" {
			problems = append(problems, "The JQL filter must not be empty.")
		} else {
			s.mu.RLock()
			cq, err := compileJQL(*wh.JQLFilter, compileCtx{st: s.st, now: s.Now(), me: c.p.user + 1, webhook: true})
			s.mu.RUnlock()
			if err != nil {
				problems = append(problems, err.Error())
			} else if len(cq.order) > 0 {
				problems = append(problems, "The JQL filter must not contain ORDER BY.")
			}
			filter = cq
		}
		if len(problems) > 0 {
			results = append(results, result{Errors: problems})
			continue
		}
		h.mu.Lock()
		h.nextID++
		reg := &registration{WebhookRegistration: WebhookRegistration{
			ID: h.nextID, Kind: WebhookDynamic, URL: body.URL, Events: slices.Clone(wh.Events), JQLFilter: *wh.JQLFilter,
			FieldIDsFilter: slices.Clone(wh.FieldIDsFilter), ExpiresAt: expires, ClientID: clientID,
		}, filter: filter}
		h.regs = append(h.regs, reg)
		h.mu.Unlock()
		results = append(results, result{CreatedWebhookID: reg.ID})
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhookRegistrationResult": results})
}

func (s *Sim) handleWebhookList(w http.ResponseWriter, r *http.Request, c *call) {
	if !requireApp(w, c) {
		return
	}
	startAt, maxResults, ok := pageParams(w, r, 100)
	if !ok {
		return
	}
	h := s.hooks
	h.mu.Lock()
	var mine []any
	for _, reg := range h.regs {
		if reg.Kind != WebhookDynamic || reg.ClientID != c.p.g.clientID {
			continue
		}
		m := map[string]any{"id": reg.ID, "jqlFilter": reg.JQLFilter, "events": reg.Events, "expirationDate": reg.ExpiresAt.UnixMilli(), "url": reg.URL}
		if len(reg.FieldIDsFilter) > 0 {
			m["fieldIdsFilter"] = reg.FieldIDsFilter
		}
		mine = append(mine, m)
	}
	h.mu.Unlock()
	page := []any{}
	if startAt < len(mine) {
		page = mine[startAt:min(len(mine), startAt+maxResults)]
	}
	writeJSON(w, http.StatusOK, map[string]any{"maxResults": maxResults, "startAt": startAt, "total": len(mine), "isLast": startAt+len(page) >= len(mine), "values": page})
}

func (s *Sim) handleWebhookDelete(w http.ResponseWriter, r *http.Request, c *call) {
	if !requireApp(w, c) {
		return
	}
	var body struct {
		WebhookIDs jsonNumberList `json:"webhookIds"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if len(body.WebhookIDs) == 0 {
		writeErrors(w, http.StatusBadRequest, []string{"webhookIds must not be empty."}, nil)
		return
	}
	h := s.hooks
	h.mu.Lock()
	h.regs = slices.DeleteFunc(h.regs, func(reg *registration) bool {
		return reg.Kind == WebhookDynamic && reg.ClientID == c.p.g.clientID && slices.Contains(body.WebhookIDs, reg.ID)
	})
	h.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (s *Sim) handleWebhookRefresh(w http.ResponseWriter, r *http.Request, c *call) {
	if !requireApp(w, c) {
		return
	}
	var body struct {
		WebhookIDs jsonNumberList `json:"webhookIds"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if len(body.WebhookIDs) == 0 {
		writeErrors(w, http.StatusBadRequest, []string{"webhookIds must not be empty."}, nil)
		return
	}
	expires := s.Now().Add(s.opts.WebhookTTL)
	h := s.hooks
	h.mu.Lock()
	for _, reg := range h.regs {
		// Unknown or foreign ids are ignored, as documented.
		if reg.Kind == WebhookDynamic && reg.ClientID == c.p.g.clientID && slices.Contains(body.WebhookIDs, reg.ID) {
			reg.ExpiresAt = expires
		}
	}
	h.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"expirationDate": expires.UnixMilli()})
}

// ---- admin webhooks: /rest/webhooks/1.0/webhook ----

func (s *Sim) renderAdminWebhook(rc rctx, reg *registration) map[string]any {
	return map[string]any{
		"self":   rc.base + "/rest/webhooks/1.0/webhook/" + strconv.FormatInt(reg.ID, 10),
		"name":   reg.Name,
		"url":    reg.URL,
		"events": reg.Events,
		"filters": map[string]string{
			"issue-related-events-section": reg.JQLFilter,
		},
		"enabled":     true,
		"excludeBody": false,
	}
}

func (s *Sim) handleAdminWebhooks(w http.ResponseWriter, r *http.Request, c *call) {
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/rest/webhooks/1.0/webhook"), "/")
	h := s.hooks
	if rest == "" {
		switch r.Method {
		case http.MethodGet:
			h.mu.Lock()
			out := []any{}
			for _, reg := range h.regs {
				if reg.Kind == WebhookAdmin {
					out = append(out, s.renderAdminWebhook(c.rc, reg))
				}
			}
			h.mu.Unlock()
			writeJSON(w, http.StatusOK, out)
		case http.MethodPost:
			var body struct {
				Name    string            `json:"name"`
				URL     string            `json:"url"`
				Events  []string          `json:"events"`
				Filters map[string]string `json:"filters"`
				JQL     string            `json:"jqlFilter"`
				Secret  string            `json:"secret"`
			}
			if !decodeBody(w, r, &body) {
				return
			}
			jql := body.JQL
			if f, ok := body.Filters["issue-related-events-section"]; ok {
				jql = f
			}
			reg, err := s.AddAdminWebhook(AdminWebhookSpec{Name: body.Name, URL: body.URL, Events: body.Events, JQL: jql, Secret: body.Secret})
			if err != nil {
				writeErrors(w, http.StatusBadRequest, []string{err.Error()}, nil)
				return
			}
			h.mu.Lock()
			var out map[string]any
			for _, rg := range h.regs {
				if rg.ID == reg.ID {
					out = s.renderAdminWebhook(c.rc, rg)
				}
			}
			h.mu.Unlock()
			writeJSON(w, http.StatusCreated, out)
		default:
			writeErrors(w, http.StatusMethodNotAllowed, []string{"Method " + r.Method + " is not allowed for this resource."}, nil)
		}
		return
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	if err != nil {
		writeErrors(w, http.StatusNotFound, []string{"Webhook not found."}, nil)
		return
	}
	h.mu.Lock()
	var found *registration
	for _, reg := range h.regs {
		if reg.ID == id && reg.Kind == WebhookAdmin {
			found = reg
		}
	}
	h.mu.Unlock()
	if found == nil {
		writeErrors(w, http.StatusNotFound, []string{"Webhook not found."}, nil)
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, s.renderAdminWebhook(c.rc, found))
	case http.MethodDelete:
		_ = s.DeleteWebhook(id)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeErrors(w, http.StatusMethodNotAllowed, []string{"Method " + r.Method + " is not allowed for this resource."}, nil)
	}
}
