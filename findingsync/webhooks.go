package findingsync

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/jql"
)

// webhookEvents are the events of the connector's dynamic webhook.
var webhookEvents = []string{"jira:issue_created", "jira:issue_updated"}

// dynamicWebhookTTL is Jira's documented lifetime of a dynamic webhook, used only when the exact
// expiry could not be read back.
const dynamicWebhookTTL = 30 * 24 * time.Hour

// RegisterWebhooks registers the connection's dynamic webhook (cloud_oauth connections with
// finding sync on): one webhook for jira:issue_created and jira:issue_updated, filtered to the
// configured project (jqlFilter "project = KEY", within the subset dynamic webhooks accept) and,
// for updates, to status changes (fieldIdsFilter status), delivering to
// <PublicURL>/webhooks/jira/<connection id>/<fresh secret>.
//
// It first deletes the webhooks registered for this connection before — the stored ids and any
// of the app's webhooks whose URL points at this connection (left over by an attempt whose result
// was lost), because Jira allows one URL per app — then stores the new secret's hash, registers,
// and stores the id and Jira's expiry. Calls: list, delete (when needed), register, refresh (to
// read the exact expiry). Token and PAT connections are Skipped: an admin registers their webhook.
// With finding sync off, previously registered webhooks are deleted and the result is Skipped.
//
// Neither the secret nor the URL is logged or returned.
func (s *Service) RegisterWebhooks(ctx context.Context, scope findings.Scope) (WebhookResult, error) {
	return s.webhooks(ctx, scope, false)
}

// RefreshWebhooks extends the stored dynamic webhooks before Jira's 30-day expiry. When Jira no
// longer knows them (expired, deleted, or pointing at an outdated secret), it registers a new one
// exactly like RegisterWebhooks. Calls: list, then refresh (or the registration's calls).
func (s *Service) RefreshWebhooks(ctx context.Context, scope findings.Scope) (WebhookResult, error) {
	return s.webhooks(ctx, scope, true)
}

func (s *Service) webhooks(ctx context.Context, scope findings.Scope, refresh bool) (WebhookResult, error) {
	row, conn, err := s.load(ctx, scope)
	if err != nil {
		return WebhookResult{}, err
	}
	if conn.Kind != connections.KindCloudOAuth {
		return WebhookResult{Skipped: true}, nil
	}
	if conn.Config.FindingSync == nil && len(row.DynamicWebhookIds) == 0 {
		return WebhookResult{Skipped: true}, nil
	}
	if conn.Config.FindingSync != nil && s.publicURL == "" {
		return WebhookResult{}, fmt.Errorf("%w: PUBLIC_URL is not set, so no webhook URL can be built", failure.ErrBadConfig)
	}
	calls := &jira.CallStats{}
	client, err := s.client(ctx, scope, conn, calls)
	if err != nil {
		return WebhookResult{}, err
	}
	log := s.logger(scope)
	w := &webhookSync{s: s, scope: scope, row: row, client: client, log: log}
	if conn.Config.FindingSync == nil {
		if err := w.unregister(ctx); err != nil {
			return WebhookResult{}, err
		}
		return WebhookResult{Skipped: true}, nil
	}
	res, err := w.ensure(ctx, conn.Config.FindingSync.ProjectKey, refresh)
	if err != nil {
		f := failure.Classify(err)
		log.Warn("dynamic webhook registration failed", slog.String("error_type", f.Type), slog.String("error", f.Message),
			slog.Int("jira_calls", calls.Total()))
		return WebhookResult{}, err
	}
	return res, nil
}

// webhookSync registers, refreshes or removes one connection's dynamic webhooks.
type webhookSync struct {
	s      *Service
	scope  findings.Scope
	row    dbq.Connection
	client *jira.Client
	log    *slog.Logger
}

// urlPrefix is the part of this connection's webhook URLs before the secret.
func (w *webhookSync) urlPrefix() string {
	return strings.TrimRight(w.s.publicURL, "/") + "/webhooks/jira/" + w.scope.ConnectionID.String() + "/"
}

// ours reports whether a registered webhook belongs to this connection.
func (w *webhookSync) ours(h jira.Webhook) bool {
	return slices.Contains(w.row.DynamicWebhookIds, h.ID) || strings.HasPrefix(h.URL, w.urlPrefix())
}

// current reports whether a registered webhook delivers to this connection with the stored secret.
func (w *webhookSync) current(h jira.Webhook) bool {
	secret, ok := strings.CutPrefix(h.URL, w.urlPrefix())
	if !ok || secret == "" || strings.Contains(secret, "/") {
		return false
	}
	return len(w.row.WebhookSecretHash) > 0 && subtle.ConstantTimeCompare(connections.HashURLSecret(secret), w.row.WebhookSecretHash) == 1
}

// list reads the app's webhooks registered in Jira.
func (w *webhookSync) list(ctx context.Context) ([]jira.Webhook, error) {
	w.s.progress(ctx, "list webhooks")
	cctx, cancel := w.s.callCtx(ctx, 1)
	defer cancel()
	return w.client.ListWebhooks(cctx)
}

// ensure keeps the connection's webhook registered: on a refresh, the stored webhooks are
// extended when Jira still knows every one of them with the stored secret; otherwise (or on a
// registration) a new one replaces them.
func (w *webhookSync) ensure(ctx context.Context, projectKey string, refresh bool) (WebhookResult, error) {
	existing, err := w.list(ctx)
	if err != nil {
		return WebhookResult{}, err
	}
	if refresh && len(w.row.DynamicWebhookIds) > 0 {
		known := 0
		for _, h := range existing {
			if slices.Contains(w.row.DynamicWebhookIds, h.ID) && w.current(h) {
				known++
			}
		}
		if known == len(w.row.DynamicWebhookIds) {
			return w.refresh(ctx)
		}
		w.log.Info("stored dynamic webhooks are no longer registered in Jira; registering again",
			slog.Any("webhook_ids", w.row.DynamicWebhookIds), slog.Int("still_registered", known))
	}
	return w.register(ctx, projectKey, existing)
}

// refresh extends the stored webhooks and stores Jira's new expiry.
func (w *webhookSync) refresh(ctx context.Context) (WebhookResult, error) {
	w.s.progress(ctx, "refresh webhooks")
	cctx, cancel := w.s.callCtx(ctx, 1)
	exp, err := w.client.RefreshWebhooks(cctx, w.row.DynamicWebhookIds)
	cancel()
	if err != nil {
		return WebhookResult{}, err
	}
	if err := w.store(ctx, w.row.DynamicWebhookIds, exp, nil); err != nil {
		return WebhookResult{}, err
	}
	w.log.Info("dynamic webhooks refreshed", slog.Any("webhook_ids", w.row.DynamicWebhookIds), slog.Time("expires_at", exp))
	return WebhookResult{IDs: slices.Clone(w.row.DynamicWebhookIds), ExpiresAt: &exp}, nil
}

// register replaces this connection's webhooks by a new one with a fresh secret.
func (w *webhookSync) register(ctx context.Context, projectKey string, existing []jira.Webhook) (WebhookResult, error) {
	if err := w.deleteOurs(ctx, existing); err != nil {
		return WebhookResult{}, err
	}
	filter, err := jql.Query{Where: jql.Eq("project", projectKey)}.Build()
	if err != nil {
		return WebhookResult{}, fmt.Errorf("%w: webhook filter: %v", failure.ErrBadConfig, err)
	}
	secrets, err := connections.NewWebhookSecrets(false)
	if err != nil {
		return WebhookResult{}, err
	}
	callback, err := url.JoinPath(w.s.publicURL, "webhooks", "jira", w.scope.ConnectionID.String(), secrets.URLSecret)
	if err != nil {
		return WebhookResult{}, fmt.Errorf("%w: PUBLIC_URL is not a URL", failure.ErrBadConfig)
	}
	// The new secret's hash is stored before Jira can deliver with it.
	if err := w.store(ctx, []int64{}, time.Time{}, connections.HashURLSecret(secrets.URLSecret)); err != nil {
		return WebhookResult{}, err
	}
	w.s.progress(ctx, "register webhook")
	cctx, cancel := w.s.callCtx(ctx, 1)
	regs, err := w.client.RegisterWebhooks(cctx, callback, []jira.WebhookSpec{{
		Events: webhookEvents, JQLFilter: filter, FieldIDsFilter: []string{"status"},
	}})
	cancel()
	if err != nil {
		return WebhookResult{}, err
	}
	if len(regs) != 1 || !regs[0].OK() {
		var msgs []string
		if len(regs) == 1 {
			msgs = regs[0].Errors
		}
		return WebhookResult{}, fmt.Errorf("%w: Jira refused the webhook: %s", failure.ErrBadConfig, strings.Join(msgs, "; "))
	}
	ids := []int64{regs[0].ID}
	// Registration does not say when the webhook expires; a refresh does.
	w.s.progress(ctx, "read webhook expiry")
	cctx, cancel = w.s.callCtx(ctx, 1)
	exp, err := w.client.RefreshWebhooks(cctx, ids)
	cancel()
	if err != nil {
		exp = w.s.now().Add(dynamicWebhookTTL).UTC()
		w.log.Info("could not read the new webhook's expiry; assuming Jira's 30 days", slog.String("err", err.Error()))
	}
	if err := w.store(ctx, ids, exp, nil); err != nil {
		return WebhookResult{}, err
	}
	w.log.Info("dynamic webhook registered", slog.Any("webhook_ids", ids), slog.Time("expires_at", exp))
	return WebhookResult{IDs: ids, ExpiresAt: &exp}, nil
}

// deleteOurs deletes this connection's webhooks in Jira.
func (w *webhookSync) deleteOurs(ctx context.Context, existing []jira.Webhook) error {
	var stale []int64
	for _, h := range existing {
		if w.ours(h) {
			stale = append(stale, h.ID)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	w.s.progress(ctx, "delete webhooks")
	cctx, cancel := w.s.callCtx(ctx, 1)
	defer cancel()
	if err := w.client.DeleteWebhooks(cctx, stale); err != nil {
		return err
	}
	w.log.Info("previous dynamic webhooks deleted", slog.Any("webhook_ids", stale))
	return nil
}

// unregister deletes the webhooks of a connection whose finding sync was turned off.
func (w *webhookSync) unregister(ctx context.Context) error {
	existing, err := w.list(ctx)
	if err != nil {
		return err
	}
	if err := w.deleteOurs(ctx, existing); err != nil {
		return err
	}
	return w.store(ctx, []int64{}, time.Time{}, nil)
}

// store records ids, expiry (zero: none) and, when given, a new secret hash.
func (w *webhookSync) store(ctx context.Context, ids []int64, exp time.Time, secretHash []byte) error {
	var expPtr *time.Time
	if !exp.IsZero() {
		e := exp.UTC()
		expPtr = &e
	}
	err := w.s.db.InOrg(ctx, w.scope.OrgID, func(q *dbq.Queries) error {
		if _, err := connections.RequireLive(ctx, q, w.scope.ConnectionID); err != nil {
			return err
		}
		return q.SetDynamicWebhooks(ctx, dbq.SetDynamicWebhooksParams{ID: w.scope.ConnectionID, Ids: ids, ExpiresAt: expPtr, SecretHash: secretHash})
	})
	if err != nil && !errors.Is(err, connections.ErrRevoked) {
		return fmt.Errorf("store dynamic webhooks: %w", err)
	}
	return err
}
