package connections

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/seal"
)

// ActionDataKeyResealed is the audit action of a page of a data key re-seal: values moved from
// older key versions to the current one, with their counts.
const ActionDataKeyResealed = "org_key.resealed"

// MaxResealPage bounds one ResealPage: its values are re-sealed in memory, then stored in one
// short transaction that takes each connection's refresh lock.
const MaxResealPage = 100

// ResealPage reports one page of an organization's re-seal.
type ResealPage struct {
	// Next is the last connection examined: the next page starts after it.
	Next uuid.UUID `json:"next"`
	// Done: the page was the last one (nothing after Next holds a value under an older version).
	Done bool `json:"done"`
	// Examined is the connections holding a value under an older version when the page was read.
	Examined int `json:"examined"`
	// Resealed counts the values stored under the current version, by sealing purpose.
	Resealed map[string]int `json:"resealed,omitempty"`
	// Unreadable counts values that do not open (they are left as they are; only a
	// re-authorization replaces them).
	Unreadable int `json:"unreadable"`
	// Changed counts values replaced meanwhile (a token refresh, a re-authorization, a webhook
	// secret rotation), which are then sealed under whatever version their writer used; a later
	// page or pass looks at them again.
	Changed int `json:"changed"`
	// Version is the current key version the values were re-sealed under (0 if none were).
	Version int32 `json:"version,omitempty"`
}

// Total is the number of values re-sealed.
func (p ResealPage) Total() int {
	n := 0
	for _, c := range p.Resealed {
		n += c
	}
	return n
}

// ResealPage re-seals, under the organization's current data key version, the credentials and
// webhook signing secrets of up to limit of its connections that hold a value sealed under an
// older version, taking the connections after the one named by after in id order. It is one step
// of the re-seal that follows a data key rotation, and may run any number of times, concurrently
// with everything else:
//
//   - The values are opened and re-sealed outside any transaction, then stored in one short
//     transaction that takes each connection's credential refresh lock (LockCredentialRefresh, in
//     id order) and writes with a compare-and-set on the exact bytes it re-sealed (and, for
//     credentials, on credentials_version). A refresh in flight is waited for and then wins: its
//     newer tokens are never overwritten, and the re-seal does not bump credentials_version, so a
//     refresh that read the credentials before the re-seal still stores its rotation.
//   - Values that do not open are counted and left alone.
//   - The page's writes and its org_key.resealed audit row (counts by purpose) commit together, so
//     a crash anywhere leaves either the old values (still readable: their version stays live
//     until nothing references it) or the new ones, and the audit row matches what was written.
func (s *Service) ResealPage(ctx context.Context, orgID, after uuid.UUID, limit int, actor audit.Actor) (ResealPage, error) {
	if limit <= 0 || limit > MaxResealPage {
		limit = MaxResealPage
	}
	// Another process rotated the key: ask the store for the current version instead of
	// trusting this process's cached belief for up to KEY_CACHE_TTL.
	s.Sealer.ForgetCurrent(orgID)
	current, err := s.Sealer.CurrentVersion(ctx, orgID)
	if err != nil {
		return ResealPage{}, fmt.Errorf("reseal organization %s: %w", orgID, err)
	}
	var rows []dbq.ListConnectionsToResealRow
	err = s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		var err error
		rows, err = q.ListConnectionsToReseal(ctx, dbq.ListConnectionsToResealParams{OrgID: orgID, AfterID: after,
			CurrentVersion: int64(current), PageSize: int32(limit)})
		return err
	})
	if err != nil {
		return ResealPage{}, fmt.Errorf("reseal organization %s: list connections: %w", orgID, err)
	}
	page := ResealPage{Next: after, Done: len(rows) < limit, Examined: len(rows)}
	type write struct {
		id                   uuid.UUID
		version              int32
		oldCreds, newCreds   []byte
		oldSecret, newSecret []byte
		purpose              string
	}
	var writes []write
	for _, r := range rows {
		page.Next = r.ID
		w := write{id: r.ID, version: r.CredentialsVersion, purpose: purpose(Kind(r.Kind))}
		if r.SealedCredentials != nil {
			out, changed, err := s.Sealer.Reseal(ctx, seal.Binding{OrgID: orgID, ConnectionID: r.ID, Purpose: w.purpose}, r.SealedCredentials)
			switch {
			case errors.Is(err, seal.ErrOpen):
				page.Unreadable++
				s.logger().Warn("reseal: stored credentials do not open; left as they are",
					"org_id", orgID.String(), "connection_id", r.ID.String(), "err", err.Error())
			case err != nil:
				return page, fmt.Errorf("reseal credentials of connection %s: %w", r.ID, err)
			case changed:
				w.oldCreds, w.newCreds = r.SealedCredentials, out
			}
		}
		if r.WebhookSigningSecret != nil {
			b := seal.Binding{OrgID: orgID, ConnectionID: r.ID, Purpose: seal.PurposeWebhookSecret}
			out, changed, err := s.Sealer.Reseal(ctx, b, r.WebhookSigningSecret)
			switch {
			case errors.Is(err, seal.ErrOpen):
				page.Unreadable++
				s.logger().Warn("reseal: stored webhook signing secret does not open; left as it is",
					"org_id", orgID.String(), "connection_id", r.ID.String(), "err", err.Error())
			case err != nil:
				return page, fmt.Errorf("reseal webhook signing secret of connection %s: %w", r.ID, err)
			case changed:
				w.oldSecret, w.newSecret = r.WebhookSigningSecret, out
			}
		}
		if w.newCreds != nil || w.newSecret != nil {
			writes = append(writes, w)
		}
	}
	if len(writes) == 0 {
		return page, nil
	}
	slices.SortFunc(writes, func(a, b write) int { return slices.Compare(a.id[:], b.id[:]) })
	err = s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		resealed := map[string]int{}
		var changed, version int
		for _, w := range writes {
			if err := q.LockCredentialRefresh(ctx, w.id); err != nil {
				return fmt.Errorf("take the refresh lock of connection %s: %w", w.id, err)
			}
			if w.newCreds != nil {
				n, err := q.ResealConnectionCredentials(ctx, dbq.ResealConnectionCredentialsParams{SealedCredentials: w.newCreds,
					ID: w.id, ExpectedVersion: w.version, OldSealedCredentials: w.oldCreds})
				if err != nil {
					return fmt.Errorf("store credentials of connection %s: %w", w.id, err)
				}
				if n == 1 {
					resealed[w.purpose]++
					version = max(version, int(mustVersion(w.newCreds)))
				} else {
					changed++
				}
			}
			if w.newSecret != nil {
				n, err := q.ResealWebhookSigningSecret(ctx, dbq.ResealWebhookSigningSecretParams{WebhookSigningSecret: w.newSecret,
					ID: w.id, OldWebhookSigningSecret: w.oldSecret})
				if err != nil {
					return fmt.Errorf("store webhook signing secret of connection %s: %w", w.id, err)
				}
				if n == 1 {
					resealed[seal.PurposeWebhookSecret]++
					version = max(version, int(mustVersion(w.newSecret)))
				} else {
					changed++
				}
			}
		}
		page.Resealed, page.Changed, page.Version = resealed, changed, int32(version)
		if len(resealed) == 0 {
			return nil
		}
		_, err := audit.Record(ctx, q, audit.Entry{OrgID: orgID, Actor: actor, Action: ActionDataKeyResealed,
			TargetType: "data_key", TargetID: fmt.Sprint(version),
			Metadata: map[string]any{"version": version, "resealed": page.Total(), "by_purpose": resealed,
				"connections": len(writes), "unreadable": page.Unreadable, "changed_meanwhile": changed}})
		return err
	})
	if err != nil {
		return ResealPage{Next: after}, fmt.Errorf("reseal organization %s: %w", orgID, err)
	}
	return page, nil
}

// mustVersion is the key version of a value this package has just sealed.
func mustVersion(sealed []byte) int32 {
	v, _ := seal.SealedKeyVersion(sealed)
	return v
}
