package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/findingsync"
	"github.com/jiraconnect/jiraconnect/jira/webhook"
)

// DefaultWebhookMaxBytes caps webhook bodies.
const DefaultWebhookMaxBytes = 1 << 20

// jiraWebhook is the webhook bridge. It authenticates a delivery (source IP, URL secret, HMAC
// signature), parses it, and stores it — accepted once per delivery id — with its parsed change
// (findings.ChangeFromWebhook: ids, keys and statuses only) in the connection's webhook inbox
// (findingsync.RecordDelivery), in one short transaction that does nothing else. Once that has
// committed the delivery is durable and the answer is 202; a delivery seen before is answered 200
// duplicate. Only then, and without making the answer wait, the connection's workflow is nudged
// (SignalInboxNudge, coalesced per connection by the nudger): it applies the inbox's pending
// changes in one activity, each exactly once.
//
// Why an inbox and a doorbell rather than a signal per delivery: a signal is one workflow
// update, so Temporal's per-workflow rate would cap a connection's deliveries per second, each
// delivery would cost a workflow task competing with the outbound drain, and a Temporal call
// inside the dedupe transaction would hold a pooled Postgres connection for as long as Temporal
// took. Here no Temporal call happens inside a transaction, and Temporal being slow or down
// delays only when deliveries are applied, never their acceptance.
//
// A delivery for a connection whose workflow is not running is stored (202) too and applied once
// the workflow runs, since a workflow with finding sync checks its inbox with every
// reconciliation (the first one of a fresh workflow included); without finding sync a change has
// nothing to apply to and the next inbox pass just marks it. A nudge that fails is logged (ids
// only) and made up for the same way.
//
// The answers are fast and use real status codes — 401 wrong secret or signature, 403 source not
// allowed, 404 unknown or revoked connection (connections.Live), 413 too large, 400 malformed —
// because Jira retries 408/409/425/429/5xx and nothing else. Nothing from the payload is echoed
// back, and nothing is rendered as HTML.
func (s *Server) jiraWebhook(c echo.Context) error {
	req := c.Request()
	ip := s.clientAddr(c)
	if len(s.deps.WebhookAllowedCIDRs) > 0 && !inAny(ip, s.deps.WebhookAllowedCIDRs) {
		return &Error{Status: http.StatusForbidden, Code: "source_not_allowed", Message: "webhook source address is not allowed"}
	}
	connID, err := uuid.Parse(c.Param("connection"))
	if err != nil {
		return errNotFound("connection")
	}
	ctx := req.Context()
	target, err := s.deps.DB.System().WebhookTarget(ctx, connID)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !connections.Live(connections.Status(target.Status), target.Deleted)) {
		return errNotFound("connection")
	}
	if err != nil {
		return err
	}
	// Compare hashes in constant time: the stored value is SHA-256 of the URL secret.
	given := sha256.Sum256([]byte(c.Param("secret")))
	if len(target.WebhookSecretHash) != len(given) || subtle.ConstantTimeCompare(given[:], target.WebhookSecretHash) != 1 {
		return &Error{Status: http.StatusUnauthorized, Code: "invalid_webhook_secret", Message: "webhook secret does not match"}
	}
	limit := s.deps.WebhookMaxBytes
	if limit <= 0 {
		limit = DefaultWebhookMaxBytes
	}
	if req.ContentLength > limit {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "webhook body too large"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "webhook body too large"}
		}
		return errBadRequest("unreadable_body", "", "could not read webhook body")
	}
	if err := s.verifySignature(ctx, target.OrgID, connID, req.Header.Get("X-Hub-Signature"), body); err != nil {
		return err
	}
	ev, err := webhook.Parse(body)
	if errors.Is(err, webhook.ErrUnsupportedEvent) {
		return c.JSON(http.StatusAccepted, map[string]string{"status": "ignored"})
	}
	if err != nil {
		var pe *webhook.ParseError
		if errors.As(err, &pe) {
			return errBadRequest("invalid_payload", pe.Field, "malformed webhook payload: "+pe.Error())
		}
		return errBadRequest("invalid_payload", "", "malformed webhook payload")
	}
	deliveryID := strings.TrimSpace(req.Header.Get("X-Atlassian-Webhook-Identifier"))
	if deliveryID == "" || len(deliveryID) > 200 {
		// Without Jira's identifier, identical bodies are the same delivery.
		sum := sha256.Sum256(body)
		deliveryID = "sha256:" + hex.EncodeToString(sum[:])
	}
	// One short transaction that only stores the delivery: the dedupe row and the inbox entry are
	// the same row, and nothing slow (no Temporal call) happens while it is open.
	inserted, err := findingsync.RecordDelivery(ctx, s.deps.DB, findingsync.Delivery{
		OrgID: target.OrgID, ConnectionID: connID, Source: ip, Change: findings.ChangeFromWebhook(deliveryID, ev, time.Now()),
	})
	if err != nil {
		return err
	}
	if !inserted {
		return c.JSON(http.StatusOK, map[string]string{"status": "duplicate"})
	}
	// Committed: the delivery is durable. Ring the workflow's doorbell without waiting for it.
	s.nudges.nudge(connID)
	return c.JSON(http.StatusAccepted, map[string]string{"status": "accepted"})
}

// verifySignature checks X-Hub-Signature (sha256=<hex HMAC of the raw body>) when the connection
// has a signing secret.
func (s *Server) verifySignature(ctx context.Context, orgID, connID uuid.UUID, header string, body []byte) error {
	secret, ok, err := s.deps.Connections.WebhookSigningSecret(ctx, orgID, connID)
	if err != nil {
		return err
	}
	if !ok {
		return nil
	}
	defer clear(secret)
	bad := &Error{Status: http.StatusUnauthorized, Code: "invalid_signature", Message: "X-Hub-Signature is missing or does not match"}
	alg, hexSig, found := strings.Cut(header, "=")
	if !found || alg != "sha256" {
		return bad
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return bad
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return bad
	}
	return nil
}
