package workflows

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/failure"
)

var (
	t0       = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	testOrg  = uuid.MustParse("0b6f0c3e-8d6a-4d8e-9a41-3f4d2c1b0a01")
	testConn = uuid.MustParse("5a1e2d3c-4b5a-4f6e-8d7c-9b0a1f2e3d04")
	day      = 24 * time.Hour
)

// loaded is an active connection created at t0 whose first sync (seq 1) started and succeeded at
// t0, idle, with the default 24h cadence and 48h threshold.
func loaded() State {
	s := NewState(testOrg, testConn, nil)
	s.Initialized, s.Loaded = true, true
	s.SyncCadence, s.StaleThreshold, s.CreatedAt = day, 2*day, t0
	s.LastAttemptAt, s.LastSuccessAt, s.LastOutcome, s.Seq = t0, t0, OutcomeSuccess, 1
	s.NextSyncAt = t0.Add(day + Jitter(testConn, 2, day))
	s.StaleAt = t0.Add(2 * day)
	return s
}

func with(s State, f func(*State)) State { f(&s); return s }

// running has sync seq in flight, started (seq-1) days after t0 as a daily schedule would.
func running(s State, seq int64, trigger string) State {
	s.Seq, s.RunningSeq, s.RunningTrigger, s.NextSyncAt = seq, seq, trigger, time.Time{}
	s.LastAttemptAt = t0.Add(time.Duration(seq-1) * day)
	return s
}

// failedOnce is loaded() after a second sync that started at 1.5 days and failed.
func failedOnce() State {
	s := loaded()
	s.Seq, s.LastAttemptAt, s.LastOutcome = 2, t0.Add(36*time.Hour), OutcomeFailed
	s.NextSyncAt = s.LastAttemptAt.Add(day + Jitter(testConn, 3, day))
	return s
}

func snapshot(status string, f func(*activities.ConnectionSnapshot)) activities.ConnectionSnapshot {
	snap := activities.ConnectionSnapshot{Status: status, SyncCadence: day, StaleThreshold: 2 * day, CreatedAt: t0}
	if f != nil {
		f(&snap)
	}
	return snap
}

// describe renders commands compactly so the tables read as the expected sequence of effects.
func describe(cmds []Command) []string {
	out := []string{}
	for _, c := range cmds {
		switch c := c.(type) {
		case CmdLoad:
			out = append(out, "load")
		case CmdStartSync:
			out = append(out, fmt.Sprintf("sync %d %s", c.Seq, c.Trigger))
		case CmdCancelSync:
			out = append(out, "cancel-sync")
		case CmdRecordFailure:
			out = append(out, fmt.Sprintf("record-failure %d %s", c.Seq, c.ErrorType))
		case CmdMirror:
			u := c.Update
			s := fmt.Sprintf("mirror %s stale=%t", u.Status, u.Stale)
			if u.Action != "" {
				s += " " + u.Action
			}
			if u.LastErrorKind != "" {
				s += " err=" + u.LastErrorKind
			}
			out = append(out, s)
		case CmdOpenAlert:
			out = append(out, "open-alert "+c.Kind)
		case CmdResolveAlert:
			out = append(out, "resolve-alert "+c.Kind)
		case CmdSearchAttributes:
			out = append(out, fmt.Sprintf("attrs %s stale=%t reauth=%t", c.Status, c.Stale, c.NeedsReauth))
		case CmdRevokeCleanup:
			out = append(out, "revoke-cleanup "+c.ActorType+"/"+c.ActorID)
		case CmdEnd:
			out = append(out, "end")
		case CmdStartFinding:
			switch c.Op {
			case FindingOpApply:
				out = append(out, fmt.Sprintf("finding apply %d", len(c.Changes)))
			case FindingOpDrain:
				out = append(out, fmt.Sprintf("finding drain %d", c.Seq))
			default:
				out = append(out, "finding "+c.Op)
			}
		case CmdCancelFinding:
			out = append(out, "cancel-finding")
		default:
			out = append(out, fmt.Sprintf("unknown %T", c))
		}
	}
	return out
}

func TestStep(t *testing.T) {
	next := func(s State) time.Time {
		return s.LastAttemptAt.Add(s.SyncCadence + Jitter(testConn, s.Seq+1, s.SyncCadence))
	}
	tests := []struct {
		name  string
		state State
		event Event
		now   time.Time
		want  []string
		check func(t *testing.T, s State)
	}{
		{
			name: "a new connection loads its configuration first", state: NewState(testOrg, testConn, nil),
			event: Started{}, now: t0, want: []string{"load"},
			check: func(t *testing.T, s State) {
				if s.Status != StatusActive || s.Loaded || !s.NextSyncAt.IsZero() || !s.Wake().IsZero() {
					t.Errorf("before the load nothing is scheduled: %+v", s)
				}
			},
		},
		{
			name: "first load syncs at once", state: NewState(testOrg, testConn, nil),
			event: Loaded{snapshot(StatusActive, nil)}, now: t0.Add(time.Second),
			want: []string{"attrs active stale=false reauth=false", "mirror active stale=false", "sync 1 schedule"},
			check: func(t *testing.T, s State) {
				if s.RunningSeq != 1 || s.LastAttemptAt != t0.Add(time.Second) || !s.Initialized {
					t.Errorf("state: %+v", s)
				}
				if s.StaleAt != t0.Add(2*day) {
					t.Errorf("stale deadline %v, want creation + threshold", s.StaleAt)
				}
				if !s.NextSyncAt.IsZero() {
					t.Errorf("no next sync while one runs: %v", s.NextSyncAt)
				}
			},
		},
		{
			name: "a workflow started for a connection that needs re-auth waits", state: NewState(testOrg, testConn, nil),
			event: Loaded{snapshot(StatusNeedsReauth, nil)}, now: t0,
			want: []string{"attrs needs_reauth stale=false reauth=true", "mirror needs_reauth stale=false"},
			check: func(t *testing.T, s State) {
				if s.RunningSeq != 0 || !s.NextSyncAt.IsZero() || s.Wake() != t0.Add(2*day) {
					t.Errorf("only the stale clock runs: %+v", s)
				}
			},
		},
		{
			name: "a stored last success is adopted by a new workflow", state: NewState(testOrg, testConn, nil),
			event: Loaded{snapshot(StatusActive, func(c *activities.ConnectionSnapshot) {
				ls := t0.Add(10 * day)
				c.LastSuccessAt = &ls
			})}, now: t0.Add(11 * day),
			want: []string{"attrs active stale=false reauth=false", "mirror active stale=false", "sync 1 schedule"},
			check: func(t *testing.T, s State) {
				if s.StaleAt != t0.Add(12*day) {
					t.Errorf("stale deadline %v", s.StaleAt)
				}
			},
		},
		{
			name: "a load long past the deadline marks stale at once and syncs", state: NewState(testOrg, testConn, nil),
			event: Loaded{snapshot(StatusActive, nil)}, now: t0.Add(3 * day),
			want: []string{"attrs active stale=true reauth=false", "mirror active stale=true connection.stale", "open-alert connection_stale", "sync 1 schedule"},
		},
		{
			name: "revoked in the store: end without cleanup", state: NewState(testOrg, testConn, nil),
			event: Loaded{snapshot(StatusRevoked, func(c *activities.ConnectionSnapshot) { c.Revoked = true })}, now: t0,
			want: []string{"attrs revoked stale=false reauth=false", "end"},
			check: func(t *testing.T, s State) {
				if !s.Ended || s.Status != StatusRevoked {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "zero cadence and threshold fall back to the defaults", state: NewState(testOrg, testConn, nil),
			event: Loaded{snapshot(StatusActive, func(c *activities.ConnectionSnapshot) { c.SyncCadence, c.StaleThreshold = 0, 0 })}, now: t0,
			want: []string{"attrs active stale=false reauth=false", "mirror active stale=false", "sync 1 schedule"},
			check: func(t *testing.T, s State) {
				if s.SyncCadence != defaultSyncCadence || s.StaleThreshold != defaultStaleThreshold {
					t.Errorf("config: %v %v", s.SyncCadence, s.StaleThreshold)
				}
			},
		},
		{
			name: "success schedules the next sync a cadence after the attempt", state: running(loaded(), 2, TriggerSchedule),
			event: SyncFinished{Seq: 2, Outcome: OutcomeSuccess}, now: t0.Add(day + time.Minute),
			want: []string{"mirror active stale=false"},
			check: func(t *testing.T, s State) {
				if s.LastSuccessAt != t0.Add(day+time.Minute) || s.RunningSeq != 0 || s.LastOutcome != OutcomeSuccess {
					t.Errorf("state: %+v", s)
				}
				if s.NextSyncAt != next(s) || s.StaleAt != t0.Add(3*day+time.Minute) {
					t.Errorf("deadlines: next %v stale %v", s.NextSyncAt, s.StaleAt)
				}
			},
		},
		{
			name: "partial counts as success and clears the last error",
			state: with(running(loaded(), 2, TriggerSchedule), func(s *State) {
				s.LastErrorType, s.LastError = failure.TypeTransient, "boom"
			}),
			event: SyncFinished{Seq: 2, Outcome: OutcomePartial}, now: t0.Add(day),
			want: []string{"mirror active stale=false"},
			check: func(t *testing.T, s State) {
				if s.LastSuccessAt != t0.Add(day) || s.LastErrorType != "" || s.LastError != "" {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name:  "success of a stale connection resolves the alert",
			state: with(running(loaded(), 3, TriggerSchedule), func(s *State) { s.Stale, s.StaleAt = true, time.Time{} }),
			event: SyncFinished{Seq: 3, Outcome: OutcomeSuccess}, now: t0.Add(2*day + time.Hour),
			want: []string{"resolve-alert connection_stale", "attrs active stale=false reauth=false", "mirror active stale=false connection.recovered"},
			check: func(t *testing.T, s State) {
				if s.Stale || s.StaleAt != t0.Add(4*day+time.Hour) {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "no data is a sync but not a success", state: running(loaded(), 2, TriggerSchedule),
			event: SyncFinished{Seq: 2, Outcome: OutcomeNoData}, now: t0.Add(day),
			want: []string{"mirror active stale=false err=no_data"},
			check: func(t *testing.T, s State) {
				if s.LastSuccessAt != t0 || s.StaleAt != t0.Add(2*day) || s.LastOutcome != OutcomeNoData {
					t.Errorf("no_data must not move the stale deadline: %+v", s)
				}
				if s.NextSyncAt != next(s) {
					t.Errorf("next sync %v, want the usual cadence", s.NextSyncAt)
				}
			},
		},
		{
			name: "an unknown outcome is treated as no data", state: running(loaded(), 2, TriggerSchedule),
			event: SyncFinished{Seq: 2, Outcome: "compliant"}, now: t0.Add(day),
			want: []string{"mirror active stale=false err=no_data"},
			check: func(t *testing.T, s State) {
				if s.LastSuccessAt != t0 {
					t.Errorf("unknown outcome counted as success")
				}
			},
		},
		{
			name: "reauth_required stops syncing but keeps the stale clock", state: running(loaded(), 2, TriggerSchedule),
			event: SyncFinished{Seq: 2, ErrorType: failure.TypeReauthRequired, Message: "invalid_grant"}, now: t0.Add(day),
			want: []string{"record-failure 2 reauth_required", "attrs needs_reauth stale=false reauth=true",
				"mirror needs_reauth stale=false connection.needs_reauth err=reauth_required"},
			check: func(t *testing.T, s State) {
				if !s.NextSyncAt.IsZero() || s.StaleAt != t0.Add(2*day) || s.Wake() != t0.Add(2*day) {
					t.Errorf("deadlines: %+v", s)
				}
				if s.LastError != "invalid_grant" || s.LastOutcome != OutcomeFailed {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "a config failure is recorded and tried again at the next cadence", state: running(loaded(), 2, TriggerSchedule),
			event: SyncFinished{Seq: 2, ErrorType: failure.TypeConfig, Message: "forbidden"}, now: t0.Add(day),
			want: []string{"record-failure 2 config", "mirror active stale=false err=config"},
			check: func(t *testing.T, s State) {
				if s.Status != StatusActive || s.NextSyncAt != next(s) {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "a transient failure after retries waits for the next cadence", state: running(loaded(), 2, TriggerSchedule),
			event: SyncFinished{Seq: 2, ErrorType: failure.TypeTransient, Message: "503"}, now: t0.Add(day + 20*time.Minute),
			want: []string{"record-failure 2 transient", "mirror active stale=false err=transient"},
			check: func(t *testing.T, s State) {
				if s.NextSyncAt != next(s) || s.LastSuccessAt != t0 {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "revoked while syncing: record the run and end without cleanup", state: running(loaded(), 2, TriggerSchedule),
			event: SyncFinished{Seq: 2, ErrorType: failure.TypeRevoked}, now: t0.Add(day),
			want: []string{"record-failure 2 revoked", "attrs revoked stale=false reauth=false", "end"},
			check: func(t *testing.T, s State) {
				if !s.Ended {
					t.Errorf("not ended")
				}
			},
		},
		{
			name: "the result of another sync is ignored", state: running(loaded(), 2, TriggerSchedule),
			event: SyncFinished{Seq: 1, Outcome: OutcomeSuccess}, now: t0.Add(day),
			want: []string{},
			check: func(t *testing.T, s State) {
				if s.RunningSeq != 2 {
					t.Errorf("state changed: %+v", s)
				}
			},
		},
		{
			name: "the stale deadline marks stale and opens one alert", state: failedOnce(),
			event: TimerFired{}, now: t0.Add(2 * day),
			want: []string{"attrs active stale=true reauth=false", "mirror active stale=true connection.stale", "open-alert connection_stale"},
			check: func(t *testing.T, s State) {
				if !s.Stale || !s.StaleAt.IsZero() {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name:  "the stale clock runs while waiting for re-auth",
			state: with(failedOnce(), func(s *State) { s.Status, s.NextSyncAt = StatusNeedsReauth, time.Time{} }),
			event: TimerFired{}, now: t0.Add(2 * day),
			want: []string{"attrs needs_reauth stale=true reauth=true", "mirror needs_reauth stale=true connection.stale", "open-alert connection_stale"},
		},
		{
			name: "a stale connection is not marked stale twice",
			state: with(loaded(), func(s *State) {
				s.Status, s.Stale, s.NextSyncAt, s.StaleAt = StatusNeedsReauth, true, time.Time{}, time.Time{}
			}),
			event: TimerFired{}, now: t0.Add(5 * day),
			want: []string{},
		},
		{
			name: "the sync deadline starts the next scheduled sync", state: loaded(),
			event: TimerFired{}, now: loaded().NextSyncAt,
			want: []string{"sync 2 schedule"},
			check: func(t *testing.T, s State) {
				if s.RunningSeq != 2 || s.LastAttemptAt != loaded().NextSyncAt {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "an early timer does nothing", state: loaded(),
			event: TimerFired{}, now: loaded().NextSyncAt.Add(-time.Second),
			want: []string{},
		},
		{
			name: "sync-now on an idle connection starts at once", state: loaded(),
			event: SyncNowRequested{}, now: t0.Add(time.Hour),
			want: []string{"sync 2 sync_now"},
			check: func(t *testing.T, s State) {
				if s.Seq != 2 || s.RunningSeq != 2 || s.PendingSeq != 0 {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "sync-now during a sync is queued after it", state: running(loaded(), 2, TriggerSchedule),
			event: SyncNowRequested{}, now: t0.Add(day),
			want: []string{},
			check: func(t *testing.T, s State) {
				if s.Seq != 3 || s.PendingSeq != 3 || s.PendingTrigger != TriggerSyncNow || s.RunningSeq != 2 {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "sync-now coalesces with a pending request",
			state: with(running(loaded(), 3, TriggerSchedule), func(s *State) {
				s.Seq, s.PendingSeq, s.PendingTrigger = 4, 4, TriggerReauthorized
			}),
			event: SyncNowRequested{}, now: t0.Add(day),
			want: []string{},
			check: func(t *testing.T, s State) {
				if s.Seq != 4 || s.PendingSeq != 4 || s.PendingTrigger != TriggerReauthorized {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "a pending request starts as soon as the running sync ends",
			state: with(running(loaded(), 2, TriggerSchedule), func(s *State) {
				s.Seq, s.PendingSeq, s.PendingTrigger = 3, 3, TriggerSyncNow
			}),
			event: SyncFinished{Seq: 2, Outcome: OutcomeSuccess}, now: t0.Add(day),
			want: []string{"mirror active stale=false", "sync 3 sync_now"},
		},
		{
			name: "re-authorization resumes with an immediate sync",
			state: with(loaded(), func(s *State) {
				s.Status, s.NextSyncAt, s.LastErrorType = StatusNeedsReauth, time.Time{}, failure.TypeReauthRequired
			}),
			event: Reauthorized{}, now: t0.Add(30 * time.Hour),
			want: []string{"attrs active stale=false reauth=false", "mirror active stale=false err=reauth_required", "sync 2 reauthorized"},
		},
		{
			name: "a sync-now queued before the auth failure runs after re-authorization",
			state: with(loaded(), func(s *State) {
				s.Status, s.NextSyncAt, s.Seq, s.PendingSeq, s.PendingTrigger = StatusNeedsReauth, time.Time{}, 3, 3, TriggerSyncNow
			}),
			event: Reauthorized{}, now: t0.Add(30 * time.Hour),
			want: []string{"attrs active stale=false reauth=false", "mirror active stale=false", "sync 3 sync_now"},
		},
		{
			name: "config-changed reloads", state: loaded(),
			event: ConfigChanged{}, now: t0.Add(time.Hour),
			want: []string{"load"},
			check: func(t *testing.T, s State) {
				if !s.ConfigReloadPending {
					t.Errorf("reload not pending")
				}
			},
		},
		{
			name: "a shorter cadence moves the next sync", state: with(loaded(), func(s *State) { s.ConfigReloadPending = true }),
			event: Loaded{snapshot(StatusActive, func(c *activities.ConnectionSnapshot) { c.SyncCadence = 6 * time.Hour })}, now: t0.Add(time.Hour),
			want: []string{"mirror active stale=false"},
			check: func(t *testing.T, s State) {
				if want := t0.Add(6*time.Hour + Jitter(testConn, 2, 6*time.Hour)); s.NextSyncAt != want || s.Wake() != want {
					t.Errorf("next sync %v, want %v", s.NextSyncAt, want)
				}
				if s.ConfigReloadPending {
					t.Errorf("reload still pending")
				}
			},
		},
		{
			name:  "a cadence already elapsed under the new configuration syncs at once",
			state: with(loaded(), func(s *State) { s.ConfigReloadPending = true }),
			event: Loaded{snapshot(StatusActive, func(c *activities.ConnectionSnapshot) { c.SyncCadence = time.Hour })}, now: t0.Add(2 * time.Hour),
			want: []string{"mirror active stale=false", "sync 2 schedule"},
		},
		{
			name: "new configuration after a config failure retries at once",
			state: with(loaded(), func(s *State) {
				s.ConfigReloadPending, s.LastErrorType, s.LastOutcome = true, failure.TypeConfig, OutcomeFailed
			}),
			event: Loaded{snapshot(StatusActive, nil)}, now: t0.Add(time.Hour),
			want: []string{"mirror active stale=false err=config", "sync 2 schedule"},
		},
		{
			name:  "a reload without config-changed does not retry a config failure",
			state: with(loaded(), func(s *State) { s.LastErrorType = failure.TypeConfig }),
			event: Loaded{snapshot(StatusActive, nil)}, now: t0.Add(time.Hour),
			want: []string{"mirror active stale=false err=config"},
		},
		{
			name:  "a reload that finds the connection re-authorized resumes it",
			state: with(loaded(), func(s *State) { s.Status, s.NextSyncAt = StatusNeedsReauth, time.Time{} }),
			event: Loaded{snapshot(StatusActive, nil)}, now: t0.Add(30 * time.Hour),
			want: []string{"attrs active stale=false reauth=false", "mirror active stale=false", "sync 2 reauthorized"},
		},
		{
			name:  "a reload does not override the workflow's own needs_reauth with a stale row",
			state: loaded(), event: Loaded{snapshot(StatusNeedsReauth, nil)}, now: t0.Add(time.Hour),
			want: []string{"mirror active stale=false"},
		},
		{
			name: "revoke during a sync cancels it, cleans up and ends", state: running(loaded(), 2, TriggerSchedule),
			event: RevokeRequested{ActorType: "api_key", ActorID: "k1"}, now: t0.Add(day),
			want: []string{"cancel-sync", "revoke-cleanup api_key/k1", "attrs revoked stale=false reauth=false", "end"},
			check: func(t *testing.T, s State) {
				if !s.Ended || s.RunningSeq != 0 || !s.NextSyncAt.IsZero() || !s.StaleAt.IsZero() || !s.Wake().IsZero() {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "revoke of an idle connection", state: loaded(),
			event: RevokeRequested{ActorType: "system", ActorID: "workflow-cancellation"}, now: t0,
			want: []string{"revoke-cleanup system/workflow-cancellation", "attrs revoked stale=false reauth=false", "end"},
		},
		{
			name: "revoked elsewhere ends without cleanup", state: running(loaded(), 2, TriggerSchedule),
			event: RevokedElsewhere{}, now: t0,
			want: []string{"cancel-sync", "attrs revoked stale=false reauth=false", "end"},
		},
		{
			name: "an ended machine ignores everything", state: endedState(loaded()),
			event: RevokeRequested{ActorType: "api_key", ActorID: "again"}, now: t0,
			want: []string{},
		},
		{
			name: "an ended machine ignores sync requests", state: endedState(loaded()),
			event: SyncNowRequested{}, now: t0,
			want: []string{},
			check: func(t *testing.T, s State) {
				if s.PendingSeq != 0 || s.Seq != 1 {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "draining starts no scheduled sync", state: with(loaded(), func(s *State) { s.Draining = true }),
			event: TimerFired{}, now: t0.Add(day + time.Hour),
			want: []string{},
			check: func(t *testing.T, s State) {
				if s.Wake() != t0.Add(2*day) {
					t.Errorf("while draining only the stale deadline wakes: %v", s.Wake())
				}
			},
		},
		{
			name: "draining keeps a sync-now pending for the next run", state: with(loaded(), func(s *State) { s.Draining = true }),
			event: SyncNowRequested{}, now: t0.Add(time.Hour),
			want: []string{},
			check: func(t *testing.T, s State) {
				if s.PendingSeq != 2 || s.RunningSeq != 0 {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name:  "a new run resets the per-run state and reloads",
			state: with(loaded(), func(s *State) { s.Draining = true }),
			event: Started{}, now: t0.Add(time.Hour),
			want: []string{"load"},
			check: func(t *testing.T, s State) {
				if s.Loaded || s.Draining || !s.NextSyncAt.IsZero() {
					t.Errorf("state: %+v", s)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.state
			got, cmds := Step(tc.state, tc.event, tc.now)
			if d := describe(cmds); !reflect.DeepEqual(d, tc.want) {
				t.Errorf("commands:\n got  %q\n want %q", d, tc.want)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
			if !reflect.DeepEqual(before, tc.state) {
				t.Errorf("Step mutated its input state")
			}
			if !got.Ended && got.Loaded {
				if w := got.Wake(); !w.IsZero() && !w.After(tc.now) {
					t.Errorf("wake %v is not after now %v: a passed deadline was left unhandled", w, tc.now)
				}
			}
		})
	}
}

// TestMirrorCarriesTheDeadlines checks the mirrored row against the state's own timestamps, with
// "never" written as absent.
func TestMirrorCarriesTheDeadlines(t *testing.T) {
	s, cmds := Step(running(loaded(), 2, TriggerSchedule), SyncFinished{Seq: 2, Outcome: OutcomeSuccess}, t0.Add(day))
	if len(cmds) != 1 {
		t.Fatalf("commands: %q", describe(cmds))
	}
	u := cmds[0].(CmdMirror).Update
	want := activities.StateUpdate{
		ConnectionRef: activities.ConnectionRef{OrgID: testOrg, ConnectionID: testConn},
		Status:        StatusActive,
		NextSyncAt:    &s.NextSyncAt, LastSyncAt: &s.LastAttemptAt, LastSuccessAt: &s.LastSuccessAt,
	}
	if !reflect.DeepEqual(u, want) {
		t.Errorf("mirror:\n got  %+v\n want %+v", u, want)
	}
	if *u.LastSuccessAt != t0.Add(day) || u.NextSyncAt.Before(t0.Add(2*day-connections.MaxSyncJitter)) {
		t.Errorf("mirror times: %+v", u)
	}

	_, cmds = Step(NewState(testOrg, testConn, nil), Loaded{snapshot(StatusNeedsReauth, nil)}, t0)
	u = cmds[1].(CmdMirror).Update
	if u.LastSuccessAt != nil || u.LastSyncAt != nil || u.NextSyncAt != nil {
		t.Errorf("never-happened times must be absent: %+v", u)
	}
}

// TestDeadlinesSurviveContinueAsNew replays the carry-over: the new run, given the carried state
// and the same configuration, computes the very same deadlines and starts the pending request.
func TestDeadlinesSurviveContinueAsNew(t *testing.T) {
	old := with(running(loaded(), 5, TriggerSchedule), func(s *State) { s.LastAttemptAt = t0.Add(4 * day) })
	old, _ = Step(old, SyncNowRequested{}, t0.Add(4*day+time.Minute))
	old, _ = Step(old, Drain{}, t0.Add(4*day+time.Minute))
	old, _ = Step(old, SyncFinished{Seq: 5, Outcome: OutcomeSuccess}, t0.Add(4*day+2*time.Minute))
	if old.PendingSeq != 6 || old.RunningSeq != 0 {
		t.Fatalf("pending request must wait for the next run: %+v", old)
	}
	carried := old.Carry()
	s := NewState(testOrg, testConn, &carried)
	s, cmds := Step(s, Started{}, t0.Add(4*day+3*time.Minute))
	if d := describe(cmds); !reflect.DeepEqual(d, []string{"load"}) {
		t.Fatalf("start: %q", d)
	}
	s, cmds = Step(s, Loaded{snapshot(StatusActive, nil)}, t0.Add(4*day+3*time.Minute))
	want := []string{"attrs active stale=false reauth=false", "mirror active stale=false", "sync 6 sync_now"}
	if d := describe(cmds); !reflect.DeepEqual(d, want) {
		t.Fatalf("after load: %q, want %q", d, want)
	}
	if s.StaleAt != old.StaleAt || s.Seq != 6 || s.LastSuccessAt != old.LastSuccessAt {
		t.Errorf("carried: old %+v\nnew %+v", old, s)
	}
	// Without a pending request, the scheduled deadline is the same as the old run's.
	quiet := with(loaded(), func(s *State) { s.Seq = 7 })
	quiet, _ = Step(quiet, TimerFired{}, t0.Add(time.Hour))
	c := quiet.Carry()
	again, _ := Step(NewState(testOrg, testConn, &c), Started{}, t0.Add(2*time.Hour))
	again, _ = Step(again, Loaded{snapshot(StatusActive, nil)}, t0.Add(2*time.Hour))
	if again.NextSyncAt != quiet.NextSyncAt || again.StaleAt != quiet.StaleAt {
		t.Errorf("deadlines changed across runs: %v/%v, want %v/%v", again.NextSyncAt, again.StaleAt, quiet.NextSyncAt, quiet.StaleAt)
	}
}

func TestJitter(t *testing.T) {
	other := uuid.MustParse("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a")
	seen := map[time.Duration]bool{}
	var sum time.Duration
	const n = 500
	for seq := int64(1); seq <= n; seq++ {
		j := Jitter(testConn, seq, day)
		if j < -connections.MaxSyncJitter || j > connections.MaxSyncJitter {
			t.Fatalf("jitter %v out of ±%v", j, connections.MaxSyncJitter)
		}
		if j != Jitter(testConn, seq, day) {
			t.Fatalf("jitter is not deterministic")
		}
		seen[j] = true
		sum += j
	}
	if len(seen) < n/2 {
		t.Errorf("jitter barely varies: %d distinct values", len(seen))
	}
	if mean := sum / n; mean < -connections.MaxSyncJitter/5 || mean > connections.MaxSyncJitter/5 {
		t.Errorf("mean jitter %v: daily syncs would creep", mean)
	}
	if Jitter(testConn, 1, day) == Jitter(other, 1, day) && Jitter(testConn, 2, day) == Jitter(other, 2, day) {
		t.Errorf("two connections get the same jitter")
	}
	if j := Jitter(testConn, 1, time.Hour); j < -3*time.Minute || j > 3*time.Minute {
		t.Errorf("an hourly cadence gets at most a twentieth of it as jitter: %v", j)
	}
	if j := Jitter(testConn, 1, 0); j != 0 {
		t.Errorf("zero cadence: %v", j)
	}
}

func TestValidators(t *testing.T) {
	reauth := with(loaded(), func(s *State) { s.Status = StatusNeedsReauth })
	pending := with(loaded(), func(s *State) { s.Status = StatusPendingAuth })
	revoked := endedState(loaded())
	tests := []struct {
		name  string
		check func(State) error
		ok    []State
		nok   []State
	}{
		{"sync-now", State.CanSyncNow, []State{loaded(), running(loaded(), 2, TriggerSchedule)}, []State{reauth, pending, revoked}},
		{"test", State.CanTest, []State{loaded(), reauth}, []State{pending, revoked}},
		{"reauthorized", State.CanReauthorize, []State{loaded(), reauth, pending}, []State{revoked}},
	}
	for _, tc := range tests {
		for _, s := range tc.ok {
			if err := tc.check(s); err != nil {
				t.Errorf("%s rejected in %s: %v", tc.name, s.Status, err)
			}
		}
		for _, s := range tc.nok {
			err := tc.check(s)
			if err == nil {
				t.Errorf("%s accepted in %s", tc.name, s.Status)
			} else if !strings.Contains(err.Error(), s.Status) && s.Status != StatusRevoked {
				t.Errorf("%s: reason %q does not name the status %s", tc.name, err, s.Status)
			}
		}
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("é", maxErrorMessage)
	got := truncate(long)
	if len(got) > maxErrorMessage+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("truncate: %d bytes", len(got))
	}
	if !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) || !utf8Valid(got) {
		t.Errorf("truncate cut inside a rune")
	}
	if truncate("short") != "short" {
		t.Errorf("short messages are kept")
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// TestResumeAfterLostWorkflow: a fresh workflow of a connection whose previous workflow was lost
// (terminated, failed, never started) carries on from the stored state instead of starting the
// connection over.
func TestResumeAfterLostWorkflow(t *testing.T) {
	at := func(d time.Duration) *time.Time { v := t0.Add(d); return &v }
	lastSync := t0.Add(10 * day)

	t.Run("schedule, success and numbering", func(t *testing.T) {
		snap := snapshot(StatusActive, func(c *activities.ConnectionSnapshot) {
			c.LastSuccessAt, c.LastSyncAt = at(10*day+time.Minute), &lastSync
			c.LastSync = &activities.SyncRunRecord{Seq: 7, Outcome: OutcomeSuccess, Trigger: TriggerSchedule}
		})
		s, cmds := Step(NewState(testOrg, testConn, nil), Loaded{snap}, t0.Add(10*day+time.Hour))
		require.Equal(t, []string{"attrs active stale=false reauth=false", "mirror active stale=false"}, describe(cmds),
			"no sync at once: the last one is an hour old")
		assert.Equal(t, int64(7), s.Seq)
		assert.Equal(t, lastSync, s.LastAttemptAt)
		assert.Equal(t, OutcomeSuccess, s.LastOutcome)
		assert.Equal(t, lastSync.Add(day+Jitter(testConn, 8, day)), s.NextSyncAt, "next sync a cadence after the stored attempt")
		assert.Equal(t, t0.Add(12*day+time.Minute), s.StaleAt)

		// The next sync is number 8: sync 7's key is never used again.
		s, cmds = Step(s, SyncNowRequested{}, t0.Add(10*day+2*time.Hour))
		assert.Contains(t, describe(cmds), "sync 8 sync_now")
	})

	t.Run("stale stays stale with its error, without a second stale event", func(t *testing.T) {
		snap := snapshot(StatusActive, func(c *activities.ConnectionSnapshot) {
			c.LastSuccessAt, c.LastSyncAt, c.Stale = at(0), at(3*day), true
			c.LastError, c.LastErrorKind = "jira: 502", failure.TypeTransient
			c.LastSync = &activities.SyncRunRecord{Seq: 4, Outcome: OutcomeFailed}
		})
		s, cmds := Step(NewState(testOrg, testConn, nil), Loaded{snap}, t0.Add(3*day+time.Hour))
		require.Equal(t, []string{"attrs active stale=true reauth=false", "mirror active stale=true err=transient"}, describe(cmds))
		assert.True(t, s.Stale)
		assert.True(t, s.StaleAt.IsZero())
		assert.Equal(t, "jira: 502", s.LastError)
		assert.Equal(t, OutcomeFailed, s.LastOutcome)

		// The next success recovers it as usual.
		s, _ = Step(s, SyncNowRequested{}, t0.Add(3*day+2*time.Hour))
		require.Equal(t, int64(5), s.RunningSeq)
		_, cmds = Step(s, SyncFinished{Seq: 5, Outcome: OutcomeSuccess}, t0.Add(3*day+3*time.Hour))
		assert.Equal(t, []string{"resolve-alert connection_stale", "attrs active stale=false reauth=false",
			"mirror active stale=false connection.recovered"}, describe(cmds))
	})

	t.Run("an interrupted run is run again under its own number", func(t *testing.T) {
		snap := snapshot(StatusActive, func(c *activities.ConnectionSnapshot) {
			c.LastSuccessAt, c.LastSyncAt = at(day), at(2*day)
			c.LastSync = &activities.SyncRunRecord{Seq: 3, Outcome: activities.OutcomeRunning, Trigger: TriggerSyncNow}
		})
		s, cmds := Step(NewState(testOrg, testConn, nil), Loaded{snap}, t0.Add(2*day+time.Hour))
		assert.Equal(t, []string{"attrs active stale=false reauth=false", "mirror active stale=false", "sync 3 sync_now"}, describe(cmds))
		assert.Equal(t, int64(3), s.Seq)
	})

	t.Run("needs_reauth waits, then finishes the interrupted run", func(t *testing.T) {
		snap := snapshot(StatusNeedsReauth, func(c *activities.ConnectionSnapshot) {
			c.LastSuccessAt, c.LastSyncAt = at(day), at(2*day)
			c.LastError, c.LastErrorKind = "token refused", failure.TypeReauthRequired
			c.LastSync = &activities.SyncRunRecord{Seq: 3, Outcome: activities.OutcomeRunning, Trigger: TriggerSchedule}
		})
		s, cmds := Step(NewState(testOrg, testConn, nil), Loaded{snap}, t0.Add(2*day+time.Hour))
		require.Equal(t, []string{"attrs needs_reauth stale=false reauth=true", "mirror needs_reauth stale=false err=reauth_required"}, describe(cmds))
		assert.Equal(t, StatusNeedsReauth, s.Status)
		assert.Zero(t, s.RunningSeq)
		assert.True(t, s.NextSyncAt.IsZero())
		assert.Equal(t, t0.Add(3*day), s.Wake(), "only the stale clock runs")

		_, cmds = Step(s, Reauthorized{}, t0.Add(2*day+2*time.Hour))
		assert.Contains(t, describe(cmds), "sync 3 schedule")
	})

	t.Run("a sync requested before the load is numbered after the stored runs", func(t *testing.T) {
		s, cmds := Step(NewState(testOrg, testConn, nil), SyncNowRequested{}, t0.Add(2*day))
		require.Empty(t, describe(cmds), "nothing runs before the load")
		require.Equal(t, int64(1), s.PendingSeq)
		snap := snapshot(StatusActive, func(c *activities.ConnectionSnapshot) {
			c.LastSuccessAt, c.LastSyncAt = at(day), at(day)
			c.LastSync = &activities.SyncRunRecord{Seq: 1, Outcome: OutcomeSuccess}
		})
		s, cmds = Step(s, Loaded{snap}, t0.Add(2*day+time.Second))
		assert.Contains(t, describe(cmds), "sync 2 sync_now", "sync 1's key is taken: its result would be replayed as a fresh sync")
		assert.Equal(t, int64(2), s.Seq)

		// An interrupted run serves such a request.
		s, _ = Step(NewState(testOrg, testConn, nil), SyncNowRequested{}, t0.Add(2*day))
		snap.LastSync = &activities.SyncRunRecord{Seq: 3, Outcome: activities.OutcomeRunning, Trigger: TriggerSchedule}
		s, cmds = Step(s, Loaded{snap}, t0.Add(2*day+time.Second))
		assert.Contains(t, describe(cmds), "sync 3 sync_now")
		assert.Equal(t, int64(3), s.Seq)
	})

	t.Run("a run that continued as new keeps its own state", func(t *testing.T) {
		snap := snapshot(StatusActive, func(c *activities.ConnectionSnapshot) {
			c.LastSyncAt, c.Stale = at(5*day), true
			c.LastSync = &activities.SyncRunRecord{Seq: 99, Outcome: activities.OutcomeRunning}
		})
		s := with(loaded(), func(s *State) { s.Loaded = false })
		got, _ := Step(s, Loaded{snap}, t0.Add(time.Hour))
		assert.Equal(t, int64(1), got.Seq)
		assert.Equal(t, t0, got.LastAttemptAt)
		assert.False(t, got.Stale)
		assert.Zero(t, got.PendingSeq)
	})
}
