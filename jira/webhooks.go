package jira

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Dynamic webhooks exist only on Jira Cloud, for OAuth 2.0 (3LO) and Connect apps. They expire
// after 30 days unless refreshed, and Jira allows one callback URL per app.

// WebhookSpec is one dynamic webhook to register.
type WebhookSpec struct {
	// Events such as "jira:issue_created", "jira:issue_updated", "jira:issue_deleted".
	Events []string `json:"events"`
	// JQLFilter is required and supports only a subset of JQL (issueKey, project, issuetype,
	// status, assignee, reporter, issue.property, cf[id]; =, !=, IN, NOT IN).
	JQLFilter string `json:"jqlFilter"`
	// FieldIDsFilter limits jira:issue_updated to changes of these fields (e.g. status).
	FieldIDsFilter []string `json:"fieldIdsFilter,omitempty"`
}

// WebhookRegistration is the per-webhook outcome of RegisterWebhooks, in request order. Jira
// answers 200 even when some registrations failed.
type WebhookRegistration struct {
	ID     int64
	Errors []string
}

// OK reports whether this webhook was registered.
func (r WebhookRegistration) OK() bool { return r.ID != 0 && len(r.Errors) == 0 }

// Webhook is a registered dynamic webhook.
type Webhook struct {
	ID             int64
	URL            string
	Events         []string
	JQLFilter      string
	FieldIDsFilter []string
	Expiration     time.Time
}

func (c *Client) cloudOnly(op string) error {
	if c.flavor != Cloud {
		return &Error{Kind: KindUnsupported, Op: op, Detail: "dynamic webhooks exist only on Jira Cloud (use admin webhooks on Data Center)"}
	}
	return nil
}

// RegisterWebhooks registers dynamic webhooks delivering to callbackURL.
func (c *Client) RegisterWebhooks(ctx context.Context, callbackURL string, specs []WebhookSpec) ([]WebhookRegistration, error) {
	const op = "webhook.register"
	if err := c.cloudOnly(op); err != nil {
		return nil, err
	}
	if len(specs) == 0 {
		return nil, configError(op, "no webhooks to register")
	}
	if u, err := url.Parse(callbackURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return nil, configError(op, "callback URL must be an absolute http(s) URL without user info")
	}
	for i, s := range specs {
		if len(s.Events) == 0 || s.JQLFilter == "" {
			return nil, configError(op, fmt.Sprintf("webhook %d needs events and a JQL filter", i))
		}
	}
	var res struct {
		Results *[]struct {
			CreatedWebhookID int64    `json:"createdWebhookId"`
			Errors           []string `json:"errors"`
		} `json:"webhookRegistrationResult"`
	}
	body := map[string]any{"url": callbackURL, "webhooks": specs}
	if err := c.do(ctx, &request{op: op, method: http.MethodPost, path: "/webhook", body: body, out: &res}); err != nil {
		return nil, err
	}
	if res.Results == nil || len(*res.Results) != len(specs) {
		return nil, &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodPost, Path: c.fullPath("/webhook"), Status: http.StatusOK,
			Detail: "registration results do not match the request"}
	}
	out := make([]WebhookRegistration, len(specs))
	for i, r := range *res.Results {
		out[i] = WebhookRegistration{ID: r.CreatedWebhookID, Errors: r.Errors}
		for j, m := range out[i].Errors {
			out[i].Errors[j] = sanitizeText(m, 300)
		}
		if r.CreatedWebhookID == 0 && len(r.Errors) == 0 {
			out[i].Errors = []string{"no webhook id returned"}
		}
	}
	return out, nil
}

func checkWebhookIDs(op string, ids []int64) error {
	if len(ids) == 0 {
		return configError(op, "no webhook ids")
	}
	for _, id := range ids {
		if id <= 0 {
			return configError(op, "webhook ids must be positive")
		}
	}
	return nil
}

// RefreshWebhooks extends the webhooks' life and returns their new expiration. Jira ignores ids
// that are unknown or belong to another app.
func (c *Client) RefreshWebhooks(ctx context.Context, ids []int64) (time.Time, error) {
	const op = "webhook.refresh"
	if err := c.cloudOnly(op); err != nil {
		return time.Time{}, err
	}
	if err := checkWebhookIDs(op, ids); err != nil {
		return time.Time{}, err
	}
	var res struct {
		ExpirationDate json.RawMessage `json:"expirationDate"`
	}
	if err := c.do(ctx, &request{op: op, method: http.MethodPut, path: "/webhook/refresh", body: map[string]any{"webhookIds": ids}, out: &res}); err != nil {
		return time.Time{}, err
	}
	var exp time.Time
	if err := unmarshalTime(res.ExpirationDate, &exp); err != nil || exp.IsZero() {
		detail := "no expirationDate"
		if err != nil {
			detail = "expirationDate is neither epoch milliseconds nor a Jira timestamp"
		}
		return time.Time{}, &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodPut, Path: c.fullPath("/webhook/refresh"), Status: http.StatusOK, Detail: detail}
	}
	return exp, nil
}

// DeleteWebhooks removes webhooks by id.
func (c *Client) DeleteWebhooks(ctx context.Context, ids []int64) error {
	const op = "webhook.delete"
	if err := c.cloudOnly(op); err != nil {
		return err
	}
	if err := checkWebhookIDs(op, ids); err != nil {
		return err
	}
	return c.do(ctx, &request{op: op, method: http.MethodDelete, path: "/webhook", body: map[string]any{"webhookIds": ids}})
}

// webhookListMaxPages bounds ListWebhooks (100 per page; an app rarely has more than a few).
const webhookListMaxPages = 20

// ListWebhooks lists the app's dynamic webhooks (all pages, bounded).
func (c *Client) ListWebhooks(ctx context.Context) ([]Webhook, error) {
	const op = "webhook.list"
	if err := c.cloudOnly(op); err != nil {
		return nil, err
	}
	var out []Webhook
	startAt := 0
	for range webhookListMaxPages {
		var page struct {
			Total  *int  `json:"total"`
			IsLast *bool `json:"isLast"`
			Values *[]struct {
				ID             int64           `json:"id"`
				URL            string          `json:"url"`
				Events         []string        `json:"events"`
				JQLFilter      string          `json:"jqlFilter"`
				FieldIDsFilter []string        `json:"fieldIdsFilter"`
				ExpirationDate json.RawMessage `json:"expirationDate"`
			} `json:"values"`
		}
		q := url.Values{"startAt": {strconv.Itoa(startAt)}, "maxResults": {"100"}}
		if err := c.do(ctx, &request{op: op, method: http.MethodGet, path: "/webhook", query: q, out: &page}); err != nil {
			return nil, err
		}
		if page.Values == nil {
			return nil, &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodGet, Path: c.fullPath("/webhook"), Status: http.StatusOK, Detail: "webhook page has no values"}
		}
		for _, v := range *page.Values {
			w := Webhook{ID: v.ID, URL: v.URL, Events: v.Events, JQLFilter: v.JQLFilter, FieldIDsFilter: v.FieldIDsFilter}
			if err := unmarshalTime(v.ExpirationDate, &w.Expiration); err != nil {
				return nil, &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodGet, Path: c.fullPath("/webhook"), Status: http.StatusOK, Detail: "bad expirationDate", Err: err}
			}
			out = append(out, w)
		}
		startAt += len(*page.Values)
		if len(*page.Values) == 0 || (page.IsLast != nil && *page.IsLast) || (page.Total != nil && startAt >= *page.Total) {
			return out, nil
		}
	}
	return nil, &Error{Kind: KindMalformedResponse, Op: op, Detail: fmt.Sprintf("more than %d webhook pages", webhookListMaxPages), Err: ErrPageLimit}
}
