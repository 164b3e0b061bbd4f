package evidence

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// DefaultStaleThreshold is how long a connection may go without a successful sync before its
// evidence stops counting, unless the connection overrides it.
const DefaultStaleThreshold = 48 * time.Hour

// StaleDeadline returns the instant at which something last successful at lastSuccess becomes
// stale: lastSuccess + threshold, in UTC. The ConnectionWorkflow sets its stale timer to this
// absolute deadline (and recomputes it after continue-as-new), so it must be a pure function of its
// inputs: no clock, no local time zone, no monotonic reading (UTC() strips it).
//
// A zero lastSuccess (never synced) returns the zero time, and a non-positive threshold returns
// lastSuccess itself: both are deadlines that have already passed, so they fail closed.
func StaleDeadline(lastSuccess time.Time, threshold time.Duration) time.Time {
	if lastSuccess.IsZero() {
		return time.Time{}
	}
	if threshold <= 0 {
		return lastSuccess.UTC()
	}
	return lastSuccess.UTC().Add(threshold)
}

// IsStale reports whether now is at or past StaleDeadline(lastSuccess, threshold). Staleness starts
// exactly at the deadline, not a moment after, so that the workflow's timer firing at the deadline
// and this function agree.
func IsStale(lastSuccess time.Time, threshold time.Duration, now time.Time) bool {
	return !now.UTC().Before(StaleDeadline(lastSuccess, threshold))
}

// ConnectionStatus is a connection's lifecycle state as stored on the connection.
type ConnectionStatus string

// Only an active connection's evidence counts. The others keep their evidence rows (evidence is
// immutable) but coverage reports it as stale, so a lapsed credential visibly degrades coverage
// instead of silently carrying yesterday's result forward.
const (
	StatusActive      ConnectionStatus = "active"       // authorised and syncing
	StatusNeedsReauth ConnectionStatus = "needs_reauth" // credential rejected; waiting for the user
	StatusRevoked     ConnectionStatus = "revoked"      // disconnected by the user
	StatusPendingAuth ConnectionStatus = "pending_auth" // created, consent not yet completed
)

// Valid reports whether s is a known status.
func (s ConnectionStatus) Valid() bool {
	switch s {
	case StatusActive, StatusNeedsReauth, StatusRevoked, StatusPendingAuth:
		return true
	}
	return false
}

// Connection is what coverage needs to know about one of the org's connections. Revoked connections
// should be included too: their evidence is reported as stale rather than vanishing.
type Connection struct {
	ID                 uuid.UUID        `json:"id"`
	Status             ConnectionStatus `json:"status"`
	StaleThreshold     time.Duration    `json:"stale_threshold"`
	LastSuccessfulSync time.Time        `json:"last_successful_sync"` // zero if it never synced
}

// Observation is the freshest observation of one evidence type through one connection: when it was
// observed, and whether it counts as compliance evidence (Item.CountsAsEvidence at write time; an
// empty sample does not). Callers normally pass the freshest satisfying observation per
// (connection, type); if they pass several, the freshest satisfying one is used, and a
// non-satisfying one is only reported when there is no satisfying one.
type Observation struct {
	ConnectionID     uuid.UUID `json:"connection_id"`
	Type             Type      `json:"type"`
	ObservedAt       time.Time `json:"observed_at"`
	CountsAsEvidence bool      `json:"counts_as_evidence"`
	Fingerprint      string    `json:"fingerprint,omitempty"` // optional: identifies the evidence row
}

// State is the coverage state of a control or of one required evidence type.
type State string

const (
	// StateCovered: fresh, satisfying evidence from an active, non-stale connection.
	StateCovered State = "covered"
	// StateStale: satisfying evidence exists, but none of it can count now.
	StateStale State = "stale"
	// StateMissing: no satisfying evidence at all.
	StateMissing State = "missing"
)

// severity orders states so that a control takes the worst state of its required types.
func (s State) severity() int {
	switch s {
	case StateCovered:
		return 0
	case StateStale:
		return 1
	}
	return 2
}

// Reason says why a connection's evidence does not count right now. When several apply, the most
// basic one is reported (see assess).
type Reason string

const (
	ReasonRevoked          Reason = "connection_revoked"
	ReasonNeedsReauth      Reason = "connection_needs_reauth"
	ReasonPendingAuth      Reason = "connection_pending_auth"
	ReasonConnectionStale  Reason = "connection_stale"  // no successful sync within the threshold
	ReasonObservationStale Reason = "observation_stale" // this evidence was last seen too long ago
	ReasonEmptyObservation Reason = "empty_observation" // only observations that prove nothing
	ReasonNoEvidence       Reason = "no_evidence"       // no observation at all (used in Why)
)

// Support is one connection's evidence for one required type.
type Support struct {
	ConnectionID     uuid.UUID `json:"connection_id"`
	ObservedAt       time.Time `json:"observed_at"`
	CountsAsEvidence bool      `json:"counts_as_evidence"`
	Fingerprint      string    `json:"fingerprint,omitempty"`
	Fresh            bool      `json:"fresh"`            // counts towards coverage now
	Reason           Reason    `json:"reason,omitempty"` // why not, when !Fresh
}

// TypeCoverage is the state of one required evidence type of a control, with the evidence from
// each connection that has any (sorted by connection id).
type TypeCoverage struct {
	Type     Type      `json:"type"`
	State    State     `json:"state"`
	Evidence []Support `json:"evidence"`
}

// ControlCoverage is the coverage of one control.
type ControlCoverage struct {
	ControlID string         `json:"control_id"`
	Framework Framework      `json:"framework"`
	Reference string         `json:"reference"`
	Title     string         `json:"title"`
	State     State          `json:"state"`
	Types     []TypeCoverage `json:"types"` // in the order of the control's Requires
	// SupportingConnections are the connections with fresh evidence for at least one required type.
	SupportingConnections []uuid.UUID `json:"supporting_connections"`
	// Why explains, one line per required type that is not covered, why the control is not
	// covered. Empty when covered.
	Why []string `json:"why,omitempty"`
}

// OrgCoverage is the coverage of every control in a catalogue for one organisation.
//
// CoveredBasisPoints is Covered/Total in hundredths of a percent, rounded down (2 of 3 is 6666,
// not 6667), so the figure never claims more coverage than there is and is the same integer in Go,
// SQL and JavaScript. It is 0 when the catalogue is empty.
type OrgCoverage struct {
	Controls           []ControlCoverage `json:"controls"`
	Total              int               `json:"total"`
	Covered            int               `json:"covered"`
	Stale              int               `json:"stale"`
	Missing            int               `json:"missing"`
	CoveredBasisPoints int               `json:"covered_basis_points"`
}

// ComputeCoverage computes control coverage for one organisation at now.
//
// A required type is covered when some connection that is active and not stale (IsStale on its
// last successful sync) has a satisfying observation that is itself not stale (IsStale on the
// observation time, with that connection's threshold). One such connection is enough: with several
// connections, a healthy one covers for a broken one. A type is stale when satisfying evidence
// exists but none qualifies, and missing when there is no satisfying evidence (observations that do
// not count as evidence, such as an empty sample, are reported but never satisfy). A control takes
// the worst state among its required types: covered only if all are covered, missing if any is
// missing, otherwise stale.
//
// Input errors (an invalid catalogue, duplicate or unknown connections, unknown statuses or types,
// non-positive thresholds, zero times) return a *ValidationError: silently skipping a bad row would
// make coverage look better or worse than it is.
func ComputeCoverage(catalogue []Control, connections []Connection, observations []Observation, now time.Time) (OrgCoverage, error) {
	if err := ValidateCatalogue(catalogue); err != nil {
		return OrgCoverage{}, err
	}
	var v validator
	if now.IsZero() {
		v.add("now", "is missing")
	}
	conns := make(map[uuid.UUID]Connection, len(connections))
	for i, c := range connections {
		f := fmt.Sprintf("connections[%d]", i)
		if c.ID == uuid.Nil {
			v.add(f+".id", "is required")
		} else if _, dup := conns[c.ID]; dup {
			v.add(f+".id", "duplicate connection %s", c.ID)
		}
		if !c.Status.Valid() {
			v.add(f+".status", "unknown status %q", c.Status)
		}
		if c.StaleThreshold <= 0 {
			v.add(f+".stale_threshold", "must be positive, got %s", c.StaleThreshold)
		}
		conns[c.ID] = c
	}
	// best holds, per (connection, type), the freshest satisfying observation, or failing that the
	// freshest non-satisfying one.
	type key struct {
		conn uuid.UUID
		typ  Type
	}
	best := make(map[key]Observation, len(observations))
	for i, o := range observations {
		f := fmt.Sprintf("observations[%d]", i)
		if _, ok := conns[o.ConnectionID]; !ok {
			v.add(f+".connection_id", "unknown connection %s (pass every connection of the org, including revoked ones)", o.ConnectionID)
		}
		if !o.Type.Valid() {
			v.add(f+".type", "unknown evidence type %q", o.Type)
		}
		if o.ObservedAt.IsZero() {
			v.add(f+".observed_at", "is missing")
		}
		k := key{o.ConnectionID, o.Type}
		cur, ok := best[k]
		if !ok || betterObservation(o, cur) {
			best[k] = o
		}
	}
	if err := v.err(); err != nil {
		return OrgCoverage{}, err
	}

	// byType lists each type's evidence, one Support per connection, sorted by connection id.
	byType := make(map[Type][]Support)
	for k, o := range best {
		byType[k.typ] = append(byType[k.typ], assess(conns[k.conn], o, now))
	}
	for _, s := range byType {
		slices.SortFunc(s, func(a, b Support) int { return strings.Compare(a.ConnectionID.String(), b.ConnectionID.String()) })
	}

	out := OrgCoverage{Controls: make([]ControlCoverage, 0, len(catalogue)), Total: len(catalogue)}
	for _, c := range catalogue {
		cc := ControlCoverage{
			ControlID: c.ID, Framework: c.Framework, Reference: c.Reference, Title: c.Title,
			State: StateCovered, SupportingConnections: []uuid.UUID{},
		}
		for _, t := range c.Requires {
			tc := TypeCoverage{Type: t, State: StateMissing, Evidence: slices.Clone(byType[t])}
			if tc.Evidence == nil {
				tc.Evidence = []Support{}
			}
			for _, s := range tc.Evidence {
				switch {
				case s.Fresh:
					tc.State = StateCovered
					if !slices.Contains(cc.SupportingConnections, s.ConnectionID) {
						cc.SupportingConnections = append(cc.SupportingConnections, s.ConnectionID)
					}
				case s.CountsAsEvidence && tc.State == StateMissing:
					tc.State = StateStale
				}
			}
			if tc.State != StateCovered {
				cc.Why = append(cc.Why, why(tc))
			}
			if tc.State.severity() > cc.State.severity() {
				cc.State = tc.State
			}
			cc.Types = append(cc.Types, tc)
		}
		slices.SortFunc(cc.SupportingConnections, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		switch cc.State {
		case StateCovered:
			out.Covered++
		case StateStale:
			out.Stale++
		default:
			out.Missing++
		}
		out.Controls = append(out.Controls, cc)
	}
	if out.Total > 0 {
		out.CoveredBasisPoints = out.Covered * 10000 / out.Total
	}
	return out, nil
}

// betterObservation reports whether o should replace cur as the observation to judge a
// (connection, type) by: satisfying beats non-satisfying, then later beats earlier.
func betterObservation(o, cur Observation) bool {
	if o.CountsAsEvidence != cur.CountsAsEvidence {
		return o.CountsAsEvidence
	}
	return o.ObservedAt.After(cur.ObservedAt)
}

// assess decides whether one connection's observation counts now, and if not, the most basic
// reason why: the connection's status first (a revoked connection's evidence never counts, however
// recent), then the connection's sync health, then the age of the observation itself.
func assess(c Connection, o Observation, now time.Time) Support {
	s := Support{
		ConnectionID: c.ID, ObservedAt: o.ObservedAt.UTC(), CountsAsEvidence: o.CountsAsEvidence,
		Fingerprint: o.Fingerprint,
	}
	switch {
	case !o.CountsAsEvidence:
		s.Reason = ReasonEmptyObservation
	case c.Status == StatusRevoked:
		s.Reason = ReasonRevoked
	case c.Status == StatusNeedsReauth:
		s.Reason = ReasonNeedsReauth
	case c.Status == StatusPendingAuth:
		s.Reason = ReasonPendingAuth
	case IsStale(c.LastSuccessfulSync, c.StaleThreshold, now):
		s.Reason = ReasonConnectionStale
	case IsStale(o.ObservedAt, c.StaleThreshold, now):
		s.Reason = ReasonObservationStale
	default:
		s.Fresh = true
	}
	return s
}

// why renders, for an auditor or an operator, why one required type is not covered.
func why(tc TypeCoverage) string {
	if len(tc.Evidence) == 0 {
		return fmt.Sprintf("%s: no evidence from any connection (%s)", tc.Type, ReasonNoEvidence)
	}
	parts := make([]string, 0, len(tc.Evidence))
	for _, s := range tc.Evidence {
		parts = append(parts, fmt.Sprintf("connection %s last observed %s: %s",
			s.ConnectionID, s.ObservedAt.Format(time.RFC3339), s.Reason))
	}
	lead := "only stale evidence"
	if tc.State == StateMissing {
		lead = "no evidence that counts"
	}
	return fmt.Sprintf("%s: %s (%s)", tc.Type, lead, strings.Join(parts, "; "))
}
