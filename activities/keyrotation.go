package activities

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

// Key rotation activities (workflows/keyrotation.go drives them). Each is a thin adapter over the
// tenancy and connections use cases, bounded per call and resumable from the cursor it returns;
// none carries key material or a credential in its input or result.
const (
	NameResealOrgSecrets     = "ResealOrgSecrets"
	NameRetireOrgKeyVersions = "RetireOrgKeyVersions"
	NameRotateDueOrgKeys     = "RotateDueOrgKeys"
	NameRewrapOrgKeys        = "RewrapOrgKeys"
)

// KeyRotationActor is the audit actor of the key rotation workflows (re-seal, retirement,
// scheduled rotation, re-wrap).
var KeyRotationActor = audit.Actor{Type: audit.ActorWorkflow, ID: "key-rotation"}

// Key rotation bounds.
const (
	// DefaultResealLimit bounds the connections one ResealOrgSecrets call examines; a large
	// organization is several short activities, each resumable from its cursor.
	DefaultResealLimit = 500
	// DefaultResealPage is the connections stored per transaction (each takes the connection's
	// refresh lock for the length of that short transaction).
	DefaultResealPage = 50
	// RetireGraceMargin is added to this worker's KEY_CACHE_TTL (or the TTL itself, if that is
	// shorter) to get how long after a rotation the old versions may be retired: it covers a seal
	// that read the old current version just before its cache entry expired and is still on its
	// way to Postgres, which takes a transaction's time. (Should one arrive later still, the
	// database refuses to store it under the retired version: the write fails, the credential
	// stays readable.)
	RetireGraceMargin = time.Minute
	// DefaultRotateOrgsPerCall bounds the organizations one RotateDueOrgKeys or RewrapOrgKeys call
	// looks at.
	DefaultRotateOrgsPerCall = 200
	// DefaultMaxRotationsPerPass bounds the rotations (KMS GenerateDataKey calls and re-seal
	// workflows) one scheduled pass starts, so a fleet whose keys all fell due at once (the first
	// pass after an upgrade, or a shortened period) rotates over several days, not in one burst.
	DefaultMaxRotationsPerPass = 500
)

// OrgKeyRef names one version of an organization's data key.
type OrgKeyRef struct {
	OrgID   uuid.UUID `json:"org_id"`
	Version int32     `json:"version"`
}

// ResealInput continues an organization's re-seal after the connection After (uuid.Nil: from the
// start).
type ResealInput struct {
	OrgID uuid.UUID `json:"org_id"`
	After uuid.UUID `json:"after"`
	// Limit bounds the connections examined by this call (0: DefaultResealLimit).
	Limit int `json:"limit,omitempty"`
	// PageSize is the connections stored per transaction (0: DefaultResealPage).
	PageSize int `json:"page_size,omitempty"`
}

// ResealResult reports one ResealOrgSecrets call, or a whole pass (summed).
type ResealResult struct {
	// Next is where the next call continues; nil when the pass is done.
	Next       *uuid.UUID     `json:"next,omitempty"`
	Examined   int            `json:"examined"`
	Resealed   int            `json:"resealed"`
	ByPurpose  map[string]int `json:"by_purpose,omitempty"`
	Unreadable int            `json:"unreadable"`
	Changed    int            `json:"changed"`
}

// Add sums r into s (s.Next is left as it is).
func (s *ResealResult) Add(r ResealResult) {
	s.Examined += r.Examined
	s.Resealed += r.Resealed
	s.Unreadable += r.Unreadable
	s.Changed += r.Changed
	for p, n := range r.ByPurpose {
		if s.ByPurpose == nil {
			s.ByPurpose = map[string]int{}
		}
		s.ByPurpose[p] += n
	}
}

// ResealOrgSecrets re-seals, under the organization's current data key version, the credentials
// and webhook signing secrets of its connections that are sealed under an older version, page by
// page (connections.Service.ResealPage: each page in one transaction with its audit row, never
// overwriting a value stored meanwhile), and returns where the next call continues. A crash at
// any point loses nothing: values not re-sealed yet still open under their own version, which is
// retired only once nothing references it.
func (a *Activities) ResealOrgSecrets(ctx context.Context, in ResealInput) (ResealResult, error) {
	if in.OrgID == uuid.Nil || in.Limit < 0 || in.PageSize < 0 || in.PageSize > connections.MaxResealPage {
		return ResealResult{}, activityError(ctx, failure.InvalidInput(fmt.Sprintf("org_id is required; limit >= 0; page_size 0..%d", connections.MaxResealPage)))
	}
	limit, page := in.Limit, in.PageSize
	if limit == 0 {
		limit = DefaultResealLimit
	}
	if page == 0 {
		page = DefaultResealPage
	}
	var res ResealResult
	after := in.After
	for {
		p, err := a.conns.ResealPage(ctx, in.OrgID, after, min(page, limit-res.Examined), KeyRotationActor)
		if err != nil {
			return res, activityError(ctx, err)
		}
		res.Add(ResealResult{Examined: p.Examined, Resealed: p.Total(), ByPurpose: p.Resealed, Unreadable: p.Unreadable, Changed: p.Changed})
		after = p.Next
		if p.Done {
			break
		}
		if res.Examined >= limit {
			res.Next = &after
			break
		}
		heartbeat(ctx, "reseal "+in.OrgID.String())
		if err := ctx.Err(); err != nil {
			return res, err
		}
	}
	if res.Resealed+res.Unreadable > 0 {
		a.log.Info("re-sealed organization secrets", slog.String("org_id", in.OrgID.String()), slog.Int("resealed", res.Resealed),
			slog.Int("unreadable", res.Unreadable), slog.Int("changed", res.Changed), slog.Bool("pass_done", res.Next == nil))
	}
	return res, nil
}

// RetireInput asks RetireOrgKeyVersions to retire an organization's unused older versions.
type RetireInput struct {
	OrgID uuid.UUID `json:"org_id"`
	// Grace overrides how long after a rotation retiring waits (0: DefaultRetireGrace of this
	// worker's KEY_CACHE_TTL). Every process must seal under the new version before an older one
	// may go, so it must cover the longest KEY_CACHE_TTL of any process.
	Grace time.Duration `json:"grace,omitempty"`
}

// RetireResult is what RetireOrgKeyVersions did (or how long to wait).
type RetireResult = tenancy.RetireResult

// DefaultRetireGrace is how long after a rotation older versions may be retired when every
// process caches keys for cacheTTL: the TTL plus RetireGraceMargin, or twice the TTL if that is
// shorter.
func DefaultRetireGrace(cacheTTL time.Duration) time.Duration {
	return cacheTTL + min(RetireGraceMargin, cacheTTL)
}

// RetireOrgKeyVersions retires the organization's live versions other than the current one that
// no stored value references (tenancy.Service.RetireUnusedDataKeys: scanned, audited, re-checked by
// the database), or reports how long to wait when the current version is younger than the grace.
func (a *Activities) RetireOrgKeyVersions(ctx context.Context, in RetireInput) (RetireResult, error) {
	if in.OrgID == uuid.Nil || in.Grace < 0 {
		return RetireResult{}, activityError(ctx, failure.InvalidInput("org_id is required and grace must not be negative"))
	}
	grace := in.Grace
	if grace == 0 {
		grace = DefaultRetireGrace(a.conns.Sealer.CacheTTL())
	}
	res, err := a.keys().RetireUnusedDataKeys(ctx, in.OrgID, grace, audit.Caller{Actor: KeyRotationActor})
	if err != nil {
		return res, activityError(ctx, err)
	}
	if len(res.Retired) > 0 || len(res.InUse) > 0 {
		a.log.Info("retired organization data key versions", slog.String("org_id", in.OrgID.String()),
			slog.Any("retired", res.Retired), slog.Any("in_use", res.InUse))
	}
	return res, nil
}

// RotateDueInput continues a scheduled rotation pass after the organization Cursor.
type RotateDueInput struct {
	// Period: rotate organizations whose current version is at least this old; 0 rotates none
	// (the pass then only resumes unfinished re-seals).
	Period time.Duration `json:"period"`
	Cursor uuid.UUID     `json:"cursor"`
	// Limit bounds the organizations examined by this call (0: DefaultRotateOrgsPerCall).
	Limit int `json:"limit,omitempty"`
	// MaxRotations bounds the rotations of this call (0: none).
	MaxRotations int `json:"max_rotations"`
}

// RotateDueResult reports one RotateDueOrgKeys call.
type RotateDueResult struct {
	// Next is where the next call continues; nil when every organization was examined.
	Next *uuid.UUID `json:"next,omitempty"`
	Orgs int        `json:"orgs"`
	// Rotated are the versions this call created; each needs its re-seal workflow.
	Rotated []OrgKeyRef `json:"rotated,omitempty"`
	// Unfinished are organizations that still have live older versions (a re-seal that never
	// started, was stopped, or left values it could not open): their re-seal is started again.
	Unfinished []OrgKeyRef `json:"unfinished,omitempty"`
	// Failed counts organizations whose rotation failed (logged; the next pass tries again).
	Failed int `json:"failed"`
}

// RotateDueOrgKeys is one step of the scheduled rotation pass: it examines organizations in id
// order after in.Cursor and rotates the data key of each whose current version is older than
// in.Period (tenancy.Service.RotateDataKey, audited with the key-rotation actor), up to
// in.MaxRotations, and lists the organizations whose re-seal is unfinished. A retry after a
// rotation committed finds the new version young and does not rotate again.
func (a *Activities) RotateDueOrgKeys(ctx context.Context, in RotateDueInput) (RotateDueResult, error) {
	if in.Period < 0 || in.Limit < 0 || in.MaxRotations < 0 {
		return RotateDueResult{}, activityError(ctx, failure.InvalidInput("period, limit and max_rotations must not be negative"))
	}
	limit := in.Limit
	if limit == 0 {
		limit = DefaultRotateOrgsPerCall
	}
	orgs, err := a.orgsAfter(ctx, in.Cursor)
	if err != nil {
		return RotateDueResult{}, activityError(ctx, err)
	}
	var res RotateDueResult
	svc := a.keys()
	for i, org := range orgs {
		if res.Orgs == limit {
			res.Next = &orgs[i-1]
			break
		}
		heartbeat(ctx, "rotate "+org.String())
		if err := ctx.Err(); err != nil {
			return res, err
		}
		st, err := svc.DataKeyState(ctx, org)
		if errors.Is(err, seal.ErrNoOrgKey) {
			res.Orgs++ // created a moment ago; its key comes with its creation
			continue
		}
		if err != nil {
			return res, activityError(ctx, err)
		}
		res.Orgs++
		if in.Period > 0 && st.Age >= in.Period && len(res.Rotated) < in.MaxRotations {
			r, err := svc.RotateDataKey(ctx, org, audit.Caller{Actor: KeyRotationActor}, "schedule")
			if err != nil {
				res.Failed++
				a.log.Warn("scheduled data key rotation failed", slog.String("org_id", org.String()), slog.String("err", err.Error()))
				continue
			}
			res.Rotated = append(res.Rotated, OrgKeyRef{OrgID: org, Version: r.Version})
			continue
		}
		if st.OlderLive > 0 {
			res.Unfinished = append(res.Unfinished, OrgKeyRef{OrgID: org, Version: st.Current})
		}
	}
	if len(res.Rotated)+res.Failed > 0 {
		a.log.Info("scheduled data key rotation", slog.Int("orgs", res.Orgs), slog.Int("rotated", len(res.Rotated)),
			slog.Int("unfinished", len(res.Unfinished)), slog.Int("failed", res.Failed))
	}
	return res, nil
}

// RewrapInput continues a re-wrap pass after the organization Cursor.
type RewrapInput struct {
	Cursor uuid.UUID `json:"cursor"`
	// Limit bounds the organizations of this call (0: DefaultRotateOrgsPerCall).
	Limit int `json:"limit,omitempty"`
}

// RewrapResult reports one RewrapOrgKeys call, or a whole pass (summed).
type RewrapResult struct {
	Next      *uuid.UUID `json:"next,omitempty"`
	Orgs      int        `json:"orgs"`
	Versions  int        `json:"versions"`
	Rewrapped int        `json:"rewrapped"`
	Current   int        `json:"current"`
	Skipped   int        `json:"skipped"`
	// MasterKeyIDs are the master keys the examined versions are wrapped under now: one, once
	// the pass is complete.
	MasterKeyIDs []string `json:"master_key_ids,omitempty"`
	// FailedOrgs are organizations whose versions could not be re-wrapped (typically: the old
	// master key is no longer usable); their errors are logged, and a new pass retries them.
	FailedOrgs []uuid.UUID `json:"failed_orgs,omitempty"`
}

// Add sums r into s (s.Next is left as it is).
func (s *RewrapResult) Add(r RewrapResult) {
	s.Orgs += r.Orgs
	s.Versions += r.Versions
	s.Rewrapped += r.Rewrapped
	s.Current += r.Current
	s.Skipped += r.Skipped
	for _, id := range r.MasterKeyIDs {
		if !slices.Contains(s.MasterKeyIDs, id) {
			s.MasterKeyIDs = append(s.MasterKeyIDs, id)
		}
	}
	s.FailedOrgs = append(s.FailedOrgs, r.FailedOrgs...)
}

// RewrapOrgKeys is one step of a re-wrap pass after the master key changed (KMS_KEY_ID names a
// new key, or the local keyring's master key was rotated): for organizations in id order after
// in.Cursor it wraps every live data key version under this worker's current master key
// (tenancy.Service.RewrapDataKeys: verified, compare-and-set, audited org_key.rewrap). Sealed
// values are not touched. Re-running is safe: versions already under the current master key are
// not stored again.
func (a *Activities) RewrapOrgKeys(ctx context.Context, in RewrapInput) (RewrapResult, error) {
	if in.Limit < 0 {
		return RewrapResult{}, activityError(ctx, failure.InvalidInput("limit must not be negative"))
	}
	limit := in.Limit
	if limit == 0 {
		limit = DefaultRotateOrgsPerCall
	}
	orgs, err := a.orgsAfter(ctx, in.Cursor)
	if err != nil {
		return RewrapResult{}, activityError(ctx, err)
	}
	var res RewrapResult
	svc := a.keys()
	for i, org := range orgs {
		if res.Orgs == limit {
			res.Next = &orgs[i-1]
			break
		}
		heartbeat(ctx, "rewrap "+org.String())
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.Orgs++
		r, err := svc.RewrapDataKeys(ctx, org, audit.Caller{Actor: KeyRotationActor})
		if err != nil {
			res.FailedOrgs = append(res.FailedOrgs, org)
			a.log.Error("re-wrap of an organization's data keys failed", slog.String("org_id", org.String()), slog.String("err", err.Error()))
			continue
		}
		res.Add(RewrapResult{Versions: r.Versions, Rewrapped: r.Rewrapped, Current: r.Current, Skipped: r.Skipped})
		if r.MasterKeyID != "" && !slices.Contains(res.MasterKeyIDs, r.MasterKeyID) {
			res.MasterKeyIDs = append(res.MasterKeyIDs, r.MasterKeyID)
		}
	}
	return res, nil
}

// orgsAfter lists the organizations after cursor in id order.
func (a *Activities) orgsAfter(ctx context.Context, cursor uuid.UUID) ([]uuid.UUID, error) {
	orgs, err := a.db.System().ListOrganizationIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list organizations: %w", err)
	}
	slices.SortFunc(orgs, func(x, y uuid.UUID) int { return bytes.Compare(x[:], y[:]) })
	i, _ := slices.BinarySearchFunc(orgs, cursor, func(x, y uuid.UUID) int { return bytes.Compare(x[:], y[:]) })
	for i < len(orgs) && orgs[i] == cursor {
		i++
	}
	return orgs[i:], nil
}

// keys is the tenancy service the key rotation activities use, on this worker's sealer.
func (a *Activities) keys() *tenancy.Service {
	return &tenancy.Service{DB: a.db, Sealer: a.conns.Sealer}
}

// KeyRotationOptions are for the key rotation activities: Postgres and KMS work in bounded steps
// that heartbeat between pages and organizations and resume from their cursor. They must
// eventually happen (an unfinished re-seal keeps an old key version live), so they retry with
// backoff up to ten times; the next scheduled pass picks up whatever a failed workflow left.
func KeyRotationOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Minute,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        5 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        5 * time.Minute,
			MaximumAttempts:        10,
			NonRetryableErrorTypes: []string{failure.TypeInvalidInput},
		},
	}
}
