package tenancy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/seal"
)

// Audit actions of data key rotation. The re-seal in between is audited by the connections
// package (org_key.resealed), whose rows it rewrites.
const (
	ActionDataKeyRotate = "org_key.rotate"
	ActionDataKeyRetire = "org_key.retire"
	ActionDataKeyRewrap = "org_key.rewrap"
)

// Data key version states as KeyVersion reports them.
const (
	// DataKeyCurrent: new values are sealed under it.
	DataKeyCurrent = "current"
	// DataKeyPrevious: live but not current — values sealed under it still open; the re-seal of
	// a rotation moves them to the current version, then the version is retired.
	DataKeyPrevious = "previous"
	// DataKeyRetired: its wrapped key was destroyed; nothing sealed under it remains.
	DataKeyRetired = "retired"
)

// KeyVersion is one version of an organization's data key, as shown to its admins and auditors:
// never key material.
type KeyVersion struct {
	Version int32  `json:"version"`
	State   string `json:"state"`
	// MasterKeyID is the KMS key (ARN) or local keyring key that wraps it.
	MasterKeyID string     `json:"master_key_id"`
	CreatedAt   time.Time  `json:"created_at"`
	WrappedAt   time.Time  `json:"wrapped_at"`
	RetiredAt   *time.Time `json:"retired_at"`
	// SealedValues is how many stored values (connection credentials and webhook signing
	// secrets) it seals now, counted when asked.
	SealedValues int64 `json:"sealed_values"`
}

// CurrentVersion is the current version among keys (as ListDataKeys returns them); 0 when the
// organization has no data key yet.
func CurrentVersion(keys []KeyVersion) int32 {
	for _, k := range keys {
		if k.State == DataKeyCurrent {
			return k.Version
		}
	}
	return 0
}

// ListDataKeys returns every version of the organization's data key, newest first.
func (s *Service) ListDataKeys(ctx context.Context, orgID uuid.UUID) ([]KeyVersion, error) {
	var out []KeyVersion
	err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		rows, err := q.ListOrgDataKeys(ctx, orgID)
		if err != nil {
			return err
		}
		out = make([]KeyVersion, 0, len(rows))
		for _, r := range rows {
			v := KeyVersion{Version: r.Version, State: DataKeyPrevious, MasterKeyID: r.KeyID, CreatedAt: r.CreatedAt.UTC(),
				WrappedAt: r.WrappedAt.UTC(), RetiredAt: utc(r.RetiredAt), SealedValues: r.SealedLogins + r.SealedWebhookKeys}
			switch {
			case r.Current:
				v.State = DataKeyCurrent
			case r.RetiredAt != nil:
				v.State = DataKeyRetired
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list data key versions of organization %s: %w", orgID, err)
	}
	return out, nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
}

// Rotation is a data key rotation that was committed.
type Rotation struct {
	OrgID           uuid.UUID `json:"org_id"`
	Version         int32     `json:"version"`
	PreviousVersion int32     `json:"previous_version"`
	MasterKeyID     string    `json:"master_key_id"`
}

// RotateDataKey gives the organization a new data key version and makes it current: a fresh key
// from the key provider (KMS GenerateDataKey), stored wrapped as the next version under the
// organization's key lock, audited as org_key.rotate in the same transaction. From then on this
// process seals under it at once and every other process within its KEY_CACHE_TTL; values
// sealed under older versions keep opening until the re-seal (a workflow the caller starts)
// moves them and retires the old versions. reason says what asked (api, cli, schedule).
func (s *Service) RotateDataKey(ctx context.Context, orgID uuid.UUID, by audit.Caller, reason string) (Rotation, error) {
	// The provider call comes first, outside the transaction: a KMS round trip must not hold the
	// organization's lock. A key generated for a rotation that then fails is simply never stored.
	k, err := s.Sealer.GenerateOrgKey(ctx, orgID)
	if err != nil {
		return Rotation{}, fmt.Errorf("rotate data key of organization %s: %w", orgID, err)
	}
	var out Rotation
	err = s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		current, err := q.LockOrgKeyPointer(ctx, orgID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrOrgNotFound
		}
		if err != nil {
			return err
		}
		if current == nil {
			return seal.ErrNoOrgKey
		}
		next := *current + 1
		if err := q.InsertOrgDataKey(ctx, dbq.InsertOrgDataKeyParams{OrgID: orgID, Version: next, WrappedKey: k.Wrapped, KeyID: k.KeyID}); err != nil {
			return fmt.Errorf("insert version %d: %w", next, err)
		}
		if err := q.SetCurrentOrgDataKey(ctx, dbq.SetCurrentOrgDataKeyParams{ID: orgID, Version: next}); err != nil {
			return fmt.Errorf("make version %d current: %w", next, err)
		}
		out = Rotation{OrgID: orgID, Version: next, PreviousVersion: *current, MasterKeyID: k.KeyID}
		_, err = audit.Record(ctx, q, audit.Entry{OrgID: orgID, Actor: by.Actor, SourceIP: by.SourceIP, Action: ActionDataKeyRotate,
			TargetType: "data_key", TargetID: strconv.Itoa(int(next)),
			Metadata: map[string]any{"version": next, "previous_version": *current, "master_key_id": k.KeyID, "reason": reason}})
		return err
	})
	if err != nil {
		return Rotation{}, fmt.Errorf("rotate data key of organization %s: %w", orgID, err)
	}
	s.Sealer.ForgetCurrent(orgID)
	return out, nil
}

// RotationState is where an organization's data key stands, read with the database's clock.
type RotationState struct {
	Current   int32
	CreatedAt time.Time
	// Age is how long ago the current version was created.
	Age time.Duration
	// OlderLive counts live versions other than the current one: a re-seal is not finished.
	OlderLive int64
}

// DataKeyState returns where the organization's data key stands; seal.ErrNoOrgKey if it has none.
func (s *Service) DataKeyState(ctx context.Context, orgID uuid.UUID) (RotationState, error) {
	var out RotationState
	err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.GetOrgKeyRotationState(ctx, orgID)
		if errors.Is(err, pgx.ErrNoRows) {
			return seal.ErrNoOrgKey
		}
		if err != nil {
			return err
		}
		out = RotationState{Current: row.Version, CreatedAt: row.CreatedAt.UTC(), Age: row.DbNow.Sub(row.CreatedAt), OlderLive: row.OlderLive}
		return nil
	})
	if err != nil {
		return RotationState{}, fmt.Errorf("data key state of organization %s: %w", orgID, err)
	}
	return out, nil
}

// RetireResult reports a retirement pass over one organization's older versions.
type RetireResult struct {
	// Retired are the versions retired now (their wrapped keys destroyed).
	Retired []int32 `json:"retired,omitempty"`
	// InUse maps each version that was left live to the number of stored values it still seals
	// (values that could not be re-sealed: typically credentials that no longer open and need a
	// re-authorization).
	InUse map[int32]int64 `json:"in_use,omitempty"`
	// WaitFor is set when nothing was retired because the current version is younger than the
	// grace: processes may still be sealing under an older version. Ask again after it.
	WaitFor time.Duration `json:"wait_for,omitempty"`
}

// RetireUnusedDataKeys retires every live version of the organization's data key other than the
// current one that no stored value references — counted by scanning the values, never taken from
// a counter — each in its own transaction with an org_key.retire audit row. It retires nothing
// while the current version is younger than grace (the longest KEY_CACHE_TTL of any process: until
// then a process may still seal under an older version), and answers how long to wait instead.
// The database re-checks each retirement under the version's row lock, so a value written
// meanwhile keeps its version live (reported in InUse).
func (s *Service) RetireUnusedDataKeys(ctx context.Context, orgID uuid.UUID, grace time.Duration, by audit.Caller) (RetireResult, error) {
	var res RetireResult
	var candidates []int32
	err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		st, err := q.GetOrgKeyRotationState(ctx, orgID)
		if errors.Is(err, pgx.ErrNoRows) {
			return seal.ErrNoOrgKey
		}
		if err != nil {
			return err
		}
		if age := st.DbNow.Sub(st.CreatedAt); age < grace {
			res.WaitFor = grace - age
			return nil
		}
		live, err := q.ListLiveOrgDataKeys(ctx, orgID)
		if err != nil {
			return err
		}
		for _, k := range live {
			if k.Version != st.Version {
				candidates = append(candidates, k.Version)
			}
		}
		return nil
	})
	if err != nil || res.WaitFor > 0 {
		return res, wrapRetire(orgID, err)
	}
	for _, v := range candidates {
		var refs int64
		var retired bool
		err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
			n, err := q.CountSealedUnderVersion(ctx, dbq.CountSealedUnderVersionParams{OrgID: orgID, Version: int64(v)})
			if err != nil {
				return err
			}
			if refs = n.Logins + n.WebhookKeys; refs > 0 {
				return nil
			}
			row, err := q.RetireOrgDataKey(ctx, dbq.RetireOrgDataKeyParams{OrgID: orgID, Version: v})
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // retired meanwhile by another pass
			}
			if err != nil {
				return err
			}
			retired = true
			_, err = audit.Record(ctx, q, audit.Entry{OrgID: orgID, Actor: by.Actor, SourceIP: by.SourceIP, Action: ActionDataKeyRetire,
				TargetType: "data_key", TargetID: strconv.Itoa(int(v)),
				Metadata: map[string]any{"version": v, "master_key_id": row.KeyID, "sealed_values": 0}})
			return err
		})
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" {
			// A value sealed under it was stored after the count: the database kept it live.
			refs, retired, err = 1, false, nil
		}
		if err != nil {
			return res, wrapRetire(orgID, fmt.Errorf("version %d: %w", v, err))
		}
		if retired {
			res.Retired = append(res.Retired, v)
			s.Sealer.ForgetKeyVersion(orgID, v)
		}
		if refs > 0 {
			if res.InUse == nil {
				res.InUse = map[int32]int64{}
			}
			res.InUse[v] = refs
		}
	}
	return res, nil
}

func wrapRetire(orgID uuid.UUID, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("retire data key versions of organization %s: %w", orgID, err)
}

// RewrapResult reports a re-wrap of one organization's data key versions.
type RewrapResult struct {
	// Versions is the live versions examined.
	Versions int `json:"versions"`
	// Rewrapped is how many now have a new wrapping under the provider's current master key.
	Rewrapped int `json:"rewrapped"`
	// Current is how many already were wrapped under it.
	Current int `json:"current"`
	// Skipped is how many changed meanwhile (re-wrapped by a concurrent pass, or retired).
	Skipped int `json:"skipped"`
	// MasterKeyID is the master key they are wrapped under now (empty if none was examined).
	MasterKeyID string `json:"master_key_id,omitempty"`
}

// RewrapDataKeys wraps every live version of the organization's data key under the key provider's
// current master key (a new KMS_KEY_ID, or the local keyring's rotated master key), leaving every
// sealed value untouched: the data keys themselves do not change. Each version is unwrapped with
// the master key that wrapped it (which must still be usable) and the new wrapping is verified
// before it is stored, with a compare-and-set on the old wrapping; the versions re-wrapped are
// stored together with one org_key.rewrap audit row. Running it again is safe and stores nothing
// for versions already under the current master key.
func (s *Service) RewrapDataKeys(ctx context.Context, orgID uuid.UUID, by audit.Caller) (RewrapResult, error) {
	var live []dbq.ListLiveOrgDataKeysRow
	err := s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		var err error
		live, err = q.ListLiveOrgDataKeys(ctx, orgID)
		return err
	})
	if err != nil {
		return RewrapResult{}, fmt.Errorf("rewrap data keys of organization %s: %w", orgID, err)
	}
	res := RewrapResult{Versions: len(live)}
	type change struct{ old, next seal.OrgKey }
	var changes []change
	for _, k := range live {
		old := seal.OrgKey{Wrapped: k.WrappedKey, KeyID: k.KeyID, Version: k.Version}
		next, changed, err := s.Sealer.Rewrap(ctx, orgID, old)
		if err != nil {
			return res, fmt.Errorf("rewrap data keys of organization %s: %w", orgID, err)
		}
		res.MasterKeyID = next.KeyID
		if !changed {
			res.Current++
			continue
		}
		changes = append(changes, change{old, next})
	}
	if len(changes) == 0 {
		return res, nil
	}
	err = s.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		var versions []int32
		from := map[string]bool{}
		for _, c := range changes {
			n, err := q.RewrapOrgDataKey(ctx, dbq.RewrapOrgDataKeyParams{WrappedKey: c.next.Wrapped, KeyID: c.next.KeyID, OrgID: orgID,
				Version: c.old.Version, OldWrappedKey: c.old.Wrapped, OldKeyID: c.old.KeyID})
			if err != nil {
				return fmt.Errorf("store version %d: %w", c.old.Version, err)
			}
			if n == 0 {
				res.Skipped++
				continue
			}
			versions = append(versions, c.old.Version)
			from[c.old.KeyID] = true
		}
		res.Rewrapped = len(versions)
		if len(versions) == 0 {
			return nil
		}
		fromIDs := make([]string, 0, len(from))
		for id := range from {
			fromIDs = append(fromIDs, id)
		}
		_, err := audit.Record(ctx, q, audit.Entry{OrgID: orgID, Actor: by.Actor, SourceIP: by.SourceIP, Action: ActionDataKeyRewrap,
			TargetType: "organization", TargetID: orgID.String(),
			Metadata: map[string]any{"versions": versions, "from_master_key_ids": fromIDs, "master_key_id": res.MasterKeyID}})
		return err
	})
	if err != nil {
		return RewrapResult{Versions: len(live)}, fmt.Errorf("rewrap data keys of organization %s: %w", orgID, err)
	}
	return res, nil
}
