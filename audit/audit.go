// Package audit writes the append-only audit log. Entries are written inside the caller's org
// transaction, so an audited change and its audit row commit or roll back together.
//
// The table itself refuses UPDATE, DELETE and TRUNCATE (a trigger) and the application role only
// holds SELECT and INSERT on it, so no code path — buggy or not — can rewrite history.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"time"

	"github.com/google/uuid"
	"github.com/sqlc-dev/pqtype"

	"github.com/jiraconnect/jiraconnect/db/dbq"
)

// ActorType says who caused an audited action.
type ActorType string

// Actor types, matching the audit_log.actor_type check constraint.
const (
	ActorAPIKey   ActorType = "api_key"
	ActorSystem   ActorType = "system"
	ActorWorkflow ActorType = "workflow"
	ActorJira     ActorType = "jira"
	ActorCLI      ActorType = "cli"
)

// Actor identifies the caller.
type Actor struct {
	Type ActorType
	ID   string
}

// Caller is who asks for an audited change and from where, as the audit log records it. Every
// use case that writes an audit row takes one.
type Caller struct {
	Actor Actor
	// SourceIP is the client address of an API request; zero for the CLI.
	SourceIP netip.Addr
}

// Entry is one audited action.
type Entry struct {
	OrgID      uuid.UUID
	Actor      Actor
	Action     string
	TargetType string
	TargetID   string
	SourceIP   netip.Addr
	// Metadata is small structured context. Keys that look like they carry a secret are
	// rejected outright: the audit log is read by auditors and must never hold credentials.
	Metadata map[string]any
}

// secretKey matches metadata keys that would suggest a credential is being written.
var secretKey = regexp.MustCompile(`(?i)(token|secret|password|passwd|credential|authorization|api_?key|private)`)

// actionPattern keeps action names greppable: dotted lower-case words, e.g. "connection.revoke".
var actionPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)

// Record appends e to the audit log through q, which must belong to an org transaction for
// e.OrgID (row-level security rejects anything else).
func Record(ctx context.Context, q *dbq.Queries, e Entry) (int64, error) {
	if e.OrgID == uuid.Nil {
		return 0, fmt.Errorf("audit %s: no organization", e.Action)
	}
	if !actionPattern.MatchString(e.Action) {
		return 0, fmt.Errorf("audit: invalid action name %q", e.Action)
	}
	if e.Actor.Type == "" {
		return 0, fmt.Errorf("audit %s: no actor", e.Action)
	}
	var meta pqtype.NullRawMessage
	if len(e.Metadata) > 0 {
		for k := range e.Metadata {
			if secretKey.MatchString(k) {
				return 0, fmt.Errorf("audit %s: metadata key %q looks like a secret and is refused", e.Action, k)
			}
		}
		b, err := json.Marshal(e.Metadata)
		if err != nil {
			return 0, fmt.Errorf("audit %s: encode metadata: %w", e.Action, err)
		}
		meta = pqtype.NullRawMessage{RawMessage: b, Valid: true}
	}
	var ip pqtype.Inet
	if e.SourceIP.IsValid() {
		a := e.SourceIP.Unmap()
		ip = pqtype.Inet{IPNet: net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}, Valid: true}
	}
	row, err := q.InsertAuditEntry(ctx, dbq.InsertAuditEntryParams{
		OrgID:      e.OrgID,
		ActorType:  string(e.Actor.Type),
		ActorID:    e.Actor.ID,
		Action:     e.Action,
		TargetType: e.TargetType,
		TargetID:   e.TargetID,
		SourceIp:   ip,
		Metadata:   meta,
	})
	if err != nil {
		return 0, fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return row.ID, nil
}

// View is an audit row as the API shows it.
type View struct {
	ID         int64           `json:"id"`
	At         time.Time       `json:"at"`
	ActorType  string          `json:"actor_type"`
	ActorID    string          `json:"actor_id,omitempty"`
	Action     string          `json:"action"`
	TargetType string          `json:"target_type,omitempty"`
	TargetID   string          `json:"target_id,omitempty"`
	SourceIP   string          `json:"source_ip,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
}

// List returns one page of the org's audit log, newest first. beforeID is the last id of the
// previous page (0 for the first page).
func List(ctx context.Context, q *dbq.Queries, beforeID int64, pageSize int) ([]View, error) {
	rows, err := q.ListAuditEntries(ctx, dbq.ListAuditEntriesParams{BeforeID: beforeID, PageSize: int32(pageSize)})
	if err != nil {
		return nil, fmt.Errorf("list audit log: %w", err)
	}
	out := make([]View, 0, len(rows))
	for _, r := range rows {
		v := View{ID: r.ID, At: r.At.UTC(), ActorType: r.ActorType, ActorID: r.ActorID, Action: r.Action,
			TargetType: r.TargetType, TargetID: r.TargetID}
		if r.SourceIp.Valid {
			v.SourceIP = r.SourceIp.IPNet.IP.String()
		}
		if r.Metadata.Valid {
			v.Metadata = r.Metadata.RawMessage
		}
		out = append(out, v)
	}
	return out, nil
}
