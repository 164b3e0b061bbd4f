package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/sqlc-dev/pqtype"
	"go.temporal.io/api/serviceerror"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/jira/webhook"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// DefaultWebhookMaxBytes caps webhook bodies.
const DefaultWebhookMaxBytes = 1 << 20

// jiraWebhook is the webhook-to-signal bridge. It authenticates a delivery (source IP, URL
// secret, HMAC signature), accepts each delivery once, and hands the parsed change to the
// connection's workflow as a signal. It answers fast with real status codes — 401 wrong secret or
// signature, 403 source not allowed, 404 unknown or revoked connection, 413 too large, 400
// malformed — because Jira retries 408/409/425/429/5xx and nothing else.
//
// Nothing from the payload is echoed back, and nothing is rendered as HTML.
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
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && (target.Deleted || target.Status == string(connections.StatusRevoked))) {
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
	change := workflows.JiraIssueChange{
		DeliveryID: deliveryID, Event: string(ev.Type), IssueID: ev.IssueID, IssueKey: ev.IssueKey,
		TimestampMillis: ev.TimestampMillis, ReceivedAt: time.Now().UTC(),
	}
	if ev.Status != nil {
		change.Status = workflows.JiraStatus{ID: ev.Status.ID, Name: ev.Status.Name, CategoryKey: ev.Status.CategoryKey}
	}
	if ev.StatusChange != nil {
		change.StatusChanged = true
		change.FromStatusName = ev.StatusChange.FromName
	}
	duplicate := false
	// The dedupe row and the signal succeed or fail together: if the signal cannot be delivered
	// the row is rolled back and Jira's retry gets another chance.
	err = s.deps.DB.InOrg(ctx, target.OrgID, func(q *dbq.Queries) error {
		n, err := q.RecordWebhookDelivery(ctx, dbq.RecordWebhookDeliveryParams{
			OrgID: target.OrgID, ConnectionID: connID, DeliveryID: deliveryID, SourceIp: inet(ip)})
		if err != nil {
			return err
		}
		if n == 0 {
			duplicate = true
			return nil
		}
		return s.deps.Temporal.SignalWorkflow(ctx, workflows.WorkflowID(connID), "", workflows.SignalJiraIssueChanged, change)
	})
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return &Error{Status: http.StatusServiceUnavailable, Code: "workflow_unavailable", Message: "connection workflow is not running; retry later"}
	}
	if err != nil {
		return err
	}
	if duplicate {
		return c.JSON(http.StatusOK, map[string]string{"status": "duplicate"})
	}
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

// inet converts an address for the inet column (invalid: NULL).
func inet(a netip.Addr) pqtype.Inet {
	if !a.IsValid() {
		return pqtype.Inet{}
	}
	a = a.Unmap()
	return pqtype.Inet{IPNet: net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}, Valid: true}
}
