package workflows

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
)

// change is an inbound issue change as the webhook bridge sends it.
func change(n int) findings.IssueChange {
	return findings.IssueChange{
		DeliveryID: fmt.Sprintf("delivery-%d", n), Event: "jira:issue_updated",
		IssueID: fmt.Sprint(10000 + n), IssueKey: fmt.Sprintf("SEC-%d", n),
		Status:        findings.JiraStatus{ID: "10002", Name: "Done", CategoryKey: "done"},
		StatusChanged: true, TimestampMillis: t0.UnixMilli() + int64(n),
	}
}

func changes(n int) []findings.IssueChange {
	out := make([]findings.IssueChange, n)
	for i := range out {
		out[i] = change(i + 1)
	}
	return out
}

// findingOn is loaded() with finding sync configured: webhooks registered and a reconciliation at
// t0, so the next reconciliation is due at t0+15m and the webhook refresh at t0+7d.
func findingOn() State {
	s := loaded()
	s.FindingSync, s.LastReconcileAt, s.WebhooksAt = true, t0, t0
	s.NextFindingAt = t0.Add(DefaultReconcileInterval)
	return s
}

// lane has the finding operation op in flight (a drain as drain seq 1).
func lane(s State, op string) State {
	s.FindingRunning, s.NextFindingAt = op, time.Time{}
	if op == FindingOpDrain {
		s.DrainSeq = max(s.DrainSeq, 1)
	}
	return s
}

// inboxChecks is s in a run whose history carries the inbox version: reconciliation ticks also
// check the webhook inbox.
func inboxChecks(s State) State {
	s.InboxChecks = true
	return s
}

func needsReauth(s State) State {
	s.Status, s.NextSyncAt, s.NextFindingAt = StatusNeedsReauth, time.Time{}, time.Time{}
	return s
}

func TestFindingStep(t *testing.T) {
	h := t0.Add(time.Hour)
	tests := []struct {
		name  string
		state State
		event Event
		now   time.Time
		want  []string
		check func(t *testing.T, s State)
	}{
		// Outbound queue.
		{
			name: "findings-pending drains at once", state: loaded(), event: FindingsPending{}, now: h,
			want: []string{"finding drain 1"},
			check: func(t *testing.T, s State) {
				if s.QueuePending || s.FindingRunning != FindingOpDrain || s.DrainSeq != 1 || !s.NextFindingAt.IsZero() {
					t.Errorf("state: %+v", s.FindingCarried)
				}
			},
		},
		{
			name: "findings-pending during a drain only sets the flag", state: lane(loaded(), FindingOpDrain),
			event: FindingsPending{}, now: h, want: []string{},
			check: func(t *testing.T, s State) {
				if !s.QueuePending || s.FindingRunning != FindingOpDrain {
					t.Errorf("state: %+v", s.FindingCarried)
				}
			},
		},
		{
			name: "a drain that left due items drains again", state: lane(loaded(), FindingOpDrain),
			event: FindingFinished{Op: FindingOpDrain, Remaining: 10, Handled: 25}, now: h,
			want: []string{"finding drain 2"},
		},
		{
			name:  "a nudge received during the drain drains again although it reported nothing left",
			state: with(lane(loaded(), FindingOpDrain), func(s *State) { s.QueuePending = true }),
			event: FindingFinished{Op: FindingOpDrain, Handled: 3}, now: h,
			want: []string{"finding drain 2"},
		},
		{
			name: "an empty queue with a delayed item sleeps until it is due", state: lane(loaded(), FindingOpDrain),
			event: FindingFinished{Op: FindingOpDrain, Handled: 3, NextDue: h.Add(2 * time.Hour)}, now: h,
			want: []string{},
			check: func(t *testing.T, s State) {
				if s.QueueNextDue != h.Add(2*time.Hour) || s.NextFindingAt != h.Add(2*time.Hour) || s.Wake() != h.Add(2*time.Hour) {
					t.Errorf("next due %v, next finding %v, wake %v", s.QueueNextDue, s.NextFindingAt, s.Wake())
				}
			},
		},
		{
			name: "the delayed item's deadline drains",
			state: with(loaded(), func(s *State) {
				s.QueueNextDue, s.NextFindingAt, s.DrainSeq = h.Add(2*time.Hour), h.Add(2*time.Hour), 4
			}),
			event: TimerFired{}, now: h.Add(2 * time.Hour),
			want: []string{"finding drain 5"},
			check: func(t *testing.T, s State) {
				if !s.QueueNextDue.IsZero() {
					t.Errorf("next due kept: %v", s.QueueNextDue)
				}
			},
		},
		{
			name: "a NextDue already passed never makes the lane spin", state: lane(loaded(), FindingOpDrain),
			event: FindingFinished{Op: FindingOpDrain, NextDue: h.Add(-time.Minute)}, now: h,
			want: []string{},
			check: func(t *testing.T, s State) {
				if s.NextFindingAt != h.Add(minQueueDelay) {
					t.Errorf("next finding %v", s.NextFindingAt)
				}
			},
		},
		{
			name: "due items a drain could not handle are tried again shortly", state: lane(loaded(), FindingOpDrain),
			event: FindingFinished{Op: FindingOpDrain, Remaining: 5}, now: h,
			want: []string{},
			check: func(t *testing.T, s State) {
				if s.QueuePending || s.NextFindingAt != h.Add(noProgressDelay) {
					t.Errorf("state: %+v, next %v", s.FindingCarried, s.NextFindingAt)
				}
			},
		},
		// Inbound changes.
		{
			name: "an inbound change is applied at once", state: loaded(),
			event: JiraIssueChanged{Change: change(1)}, now: h,
			want: []string{"finding apply 1"},
			check: func(t *testing.T, s State) {
				if len(s.Inbound) != 0 || len(s.Applying) != 1 || s.FindingRunning != FindingOpApply {
					t.Errorf("state: %+v", s.FindingCarried)
				}
			},
		},
		{
			name: "an inbound change during an apply is buffered", state: lane(loaded(), FindingOpApply),
			event: JiraIssueChanged{Change: change(2)}, now: h,
			want: []string{},
			check: func(t *testing.T, s State) {
				if len(s.Inbound) != 1 || s.Inbound[0].DeliveryID != "delivery-2" {
					t.Errorf("buffer: %+v", s.Inbound)
				}
			},
		},
		{
			name:  "the buffered changes are applied in one batch",
			state: with(lane(loaded(), FindingOpApply), func(s *State) { s.Inbound = changes(7) }),
			event: FindingFinished{Op: FindingOpApply}, now: h,
			want: []string{"finding apply 7"},
		},
		{
			name: "a change without an issue id is ignored", state: loaded(),
			event: JiraIssueChanged{Change: findings.IssueChange{DeliveryID: "x"}}, now: h,
			want: []string{},
		},
		{
			name:  "a full buffer is traded for a reconciliation",
			state: with(lane(findingOn(), FindingOpDrain), func(s *State) { s.Inbound = changes(MaxInboundBuffer) }),
			event: JiraIssueChanged{Change: change(101)}, now: t0.Add(10 * time.Minute),
			want: []string{},
			check: func(t *testing.T, s State) {
				if len(s.Inbound) != 0 || !s.ReconcileNeeded {
					t.Errorf("buffer %d, reconcile needed %t", len(s.Inbound), s.ReconcileNeeded)
				}
			},
		},
		{
			name:  "dropped changes are reconciled as soon as the lane is free",
			state: with(lane(findingOn(), FindingOpDrain), func(s *State) { s.ReconcileNeeded = true }),
			event: FindingFinished{Op: FindingOpDrain}, now: t0.Add(10 * time.Minute),
			want: []string{"finding reconcile"},
			check: func(t *testing.T, s State) {
				if s.ReconcileNeeded || !s.QueuePending || s.LastReconcileAt != t0.Add(10*time.Minute) {
					t.Errorf("state: %+v", s.FindingCarried)
				}
			},
		},
		// The webhook inbox.
		{
			name: "an inbox nudge applies the inbox at once", state: loaded(), event: InboxNudged{}, now: h,
			want: []string{"finding inbox"},
			check: func(t *testing.T, s State) {
				if s.InboxPending || s.FindingRunning != FindingOpInbox || !s.NextFindingAt.IsZero() {
					t.Errorf("state: %+v", s.FindingCarried)
				}
			},
		},
		{
			name: "nudges during an inbox pass coalesce into one more pass", state: lane(loaded(), FindingOpInbox),
			event: InboxNudged{}, now: h, want: []string{},
			check: func(t *testing.T, s State) {
				if !s.InboxPending || s.FindingRunning != FindingOpInbox {
					t.Errorf("state: %+v", s.FindingCarried)
				}
				s, _ = Step(s, InboxNudged{}, h)
				// The pass in flight may have read the inbox before those deliveries were stored.
				s, cmds := Step(s, FindingFinished{Op: FindingOpInbox, Handled: 3}, h.Add(time.Second))
				if !reflect.DeepEqual(describe(cmds), []string{"finding inbox"}) || s.InboxPending {
					t.Errorf("after the pass: %q %+v", describe(cmds), s.FindingCarried)
				}
			},
		},
		{
			name: "an inbox pass that left changes behind runs again", state: lane(loaded(), FindingOpInbox),
			event: FindingFinished{Op: FindingOpInbox, Remaining: 700, Handled: 500}, now: h,
			want: []string{"finding inbox"},
		},
		{
			name: "an inbox pass that emptied the inbox ends the work", state: lane(loaded(), FindingOpInbox),
			event: FindingFinished{Op: FindingOpInbox, Handled: 42}, now: h,
			want: []string{},
			check: func(t *testing.T, s State) {
				if s.InboxPending || !s.InboxRetryAt.IsZero() || !s.NextFindingAt.IsZero() || s.LastFindingOp != FindingOpInbox {
					t.Errorf("state: %+v next %v", s.FindingCarried, s.NextFindingAt)
				}
			},
		},
		{
			name: "pending changes an inbox pass could not take are tried again shortly", state: lane(loaded(), FindingOpInbox),
			event: FindingFinished{Op: FindingOpInbox, Remaining: 5}, now: h,
			want: []string{},
			check: func(t *testing.T, s State) {
				if s.InboxPending || s.InboxRetryAt != h.Add(noProgressDelay) || s.NextFindingAt != h.Add(noProgressDelay) {
					t.Errorf("state: %+v next %v", s.FindingCarried, s.NextFindingAt)
				}
				s, cmds := Step(s, TimerFired{}, h.Add(noProgressDelay))
				if !reflect.DeepEqual(describe(cmds), []string{"finding inbox"}) || !s.InboxRetryAt.IsZero() {
					t.Errorf("at the retry: %q %+v", describe(cmds), s.FindingCarried)
				}
			},
		},
		{
			name:  "the inbox goes before the queue",
			state: with(lane(loaded(), FindingOpReconcile), func(s *State) { s.QueuePending, s.InboxPending = true, true }),
			event: FindingFinished{Op: FindingOpReconcile}, now: h,
			want: []string{"finding inbox"},
		},
		{
			name:  "signalled changes go before the inbox",
			state: with(loaded(), func(s *State) { s.Inbound = changes(1) }),
			event: InboxNudged{}, now: h,
			want: []string{"finding apply 1"},
			check: func(t *testing.T, s State) {
				if !s.InboxPending {
					t.Errorf("the inbox waits for its turn: %+v", s.FindingCarried)
				}
			},
		},
		{
			name:  "an inbox that keeps filling yields to the queue, so the drain lane is never starved",
			state: with(lane(loaded(), FindingOpInbox), func(s *State) { s.QueuePending = true }),
			event: FindingFinished{Op: FindingOpInbox, Remaining: 100000, Handled: 500}, now: h,
			want: []string{"finding drain 1"},
			check: func(t *testing.T, s State) {
				if !s.InboxPending {
					t.Errorf("the inbox is next: %+v", s.FindingCarried)
				}
				s, cmds := Step(s, FindingFinished{Op: FindingOpDrain, Remaining: 10, Handled: 25}, h.Add(time.Second))
				if !reflect.DeepEqual(describe(cmds), []string{"finding inbox"}) {
					t.Errorf("after the drain: %q", describe(cmds))
				}
			},
		},
		{
			name: "each reconciliation tick also checks the inbox", state: inboxChecks(findingOn()),
			event: TimerFired{}, now: t0.Add(DefaultReconcileInterval),
			want: []string{"finding reconcile"},
			check: func(t *testing.T, s State) {
				if !s.InboxPending || !s.QueuePending {
					t.Errorf("state: %+v", s.FindingCarried)
				}
				// A lost nudge converges: the inbox is checked right after the reconciliation.
				s, cmds := Step(s, FindingFinished{Op: FindingOpReconcile}, t0.Add(DefaultReconcileInterval+time.Second))
				if !reflect.DeepEqual(describe(cmds), []string{"finding inbox"}) {
					t.Errorf("after the reconciliation: %q", describe(cmds))
				}
			},
		},
		{
			name: "a run from before the inbox reconciles without checking it (replay)", state: findingOn(),
			event: TimerFired{}, now: t0.Add(DefaultReconcileInterval),
			want: []string{"finding reconcile"},
			check: func(t *testing.T, s State) {
				if s.InboxPending {
					t.Errorf("state: %+v", s.FindingCarried)
				}
				s, cmds := Step(s, FindingFinished{Op: FindingOpReconcile}, t0.Add(DefaultReconcileInterval+time.Second))
				if !reflect.DeepEqual(describe(cmds), []string{"finding drain 1"}) {
					t.Errorf("after the reconciliation: %q", describe(cmds))
				}
			},
		},
		{
			name: "a failed inbox pass asks again after the backoff", state: lane(findingOn(), FindingOpInbox),
			event: FindingFinished{Op: FindingOpInbox, ErrorType: failure.TypeTransient, Message: "connection refused"}, now: t0.Add(time.Minute),
			want: []string{"mirror active stale=false err=transient"},
			check: func(t *testing.T, s State) {
				if !s.InboxPending || s.FindingFailures != 1 || s.NextFindingAt != t0.Add(2*time.Minute) {
					t.Errorf("state: %+v next %v", s.FindingCarried, s.NextFindingAt)
				}
				s, cmds := Step(s, TimerFired{}, t0.Add(2*time.Minute))
				s, cmds2 := Step(s, FindingFinished{Op: FindingOpInbox, Handled: 1}, t0.Add(2*time.Minute+time.Second))
				if got := append(describe(cmds), describe(cmds2)...); !reflect.DeepEqual(got, []string{"finding inbox", "mirror active stale=false"}) ||
					s.FindingErrorType != "" || s.FindingFailures != 0 {
					t.Errorf("after the backoff: %q %+v", got, s.FindingCarried)
				}
			},
		},
		{
			name: "an inbox nudge while waiting for re-auth only sets the flag", state: needsReauth(loaded()),
			event: InboxNudged{}, now: h, want: []string{},
			check: func(t *testing.T, s State) {
				if !s.InboxPending || !s.NextFindingAt.IsZero() {
					t.Errorf("state: %+v", s.FindingCarried)
				}
				s, cmds := Step(s, Reauthorized{}, h.Add(time.Hour))
				if got := describe(cmds); got[len(got)-1] != "finding inbox" {
					t.Errorf("after re-authorization: %q", got)
				}
			},
		},
		{
			name: "an inbox nudge while draining for continue-as-new is carried", state: with(loaded(), func(s *State) { s.Draining = true }),
			event: InboxNudged{}, now: h, want: []string{},
			check: func(t *testing.T, s State) {
				c := s.Carry()
				if !c.InboxPending {
					t.Fatalf("carried: %+v", c.FindingCarried)
				}
				next := NewState(testOrg, testConn, &c)
				next, _ = Step(next, Started{}, h.Add(time.Second))
				_, cmds := Step(next, Loaded{snapshot(StatusActive, nil)}, h.Add(2*time.Second))
				if got := describe(cmds); got[len(got)-1] != "finding inbox" {
					t.Errorf("the next run checks the inbox: %q", got)
				}
			},
		},
		// Ordering and fairness.
		{
			name: "inbound changes go before the queue",
			state: with(lane(loaded(), FindingOpReconcile), func(s *State) {
				s.QueuePending, s.Inbound = true, changes(2)
			}),
			event: FindingFinished{Op: FindingOpReconcile}, now: h,
			want: []string{"finding apply 2"},
		},
		{
			name: "the operation that ran last yields, so a flood of changes cannot starve the queue",
			state: with(lane(loaded(), FindingOpApply), func(s *State) {
				s.QueuePending, s.Inbound = true, changes(3)
			}),
			event: FindingFinished{Op: FindingOpApply}, now: h,
			want: []string{"finding drain 1"},
			check: func(t *testing.T, s State) {
				if len(s.Inbound) != 3 {
					t.Errorf("the changes wait for the next turn: %d", len(s.Inbound))
				}
			},
		},
		{
			name:  "a drain that keeps finding work yields to a due reconciliation",
			state: lane(findingOn(), FindingOpDrain),
			event: FindingFinished{Op: FindingOpDrain, Remaining: 100, Handled: 25}, now: t0.Add(20 * time.Minute),
			want: []string{"finding reconcile"},
		},
		{
			name:  "finding work starts alongside a due sync",
			state: with(loaded(), func(s *State) { s.QueuePending = true }),
			event: TimerFired{}, now: loaded().NextSyncAt,
			want: []string{"sync 2 schedule", "finding drain 1"},
		},
		{
			name:  "a running sync does not hold back finding work",
			state: running(loaded(), 2, TriggerSchedule),
			event: FindingsPending{}, now: t0.Add(day),
			want: []string{"finding drain 1"},
		},
		// Reconciliation.
		{
			name: "reconciliation is due every interval", state: findingOn(),
			event: TimerFired{}, now: t0.Add(DefaultReconcileInterval),
			want: []string{"finding reconcile"},
			check: func(t *testing.T, s State) {
				if !s.QueuePending || s.LastReconcileAt != t0.Add(DefaultReconcileInterval) {
					t.Errorf("state: %+v", s.FindingCarried)
				}
			},
		},
		{
			name:  "each reconciliation tick also drains the queue",
			state: with(lane(findingOn(), FindingOpReconcile), func(s *State) { s.QueuePending = true }),
			event: FindingFinished{Op: FindingOpReconcile}, now: t0.Add(time.Minute),
			want: []string{"finding drain 1"},
		},
		{
			name:  "the reconcile interval comes from the input",
			state: with(findingOn(), func(s *State) { s.ReconcileInterval = time.Hour }),
			event: FindingsPending{}, now: t0.Add(20 * time.Minute),
			want: []string{"finding drain 1"},
			check: func(t *testing.T, s State) {
				s, cmds := Step(s, FindingFinished{Op: FindingOpDrain}, t0.Add(21*time.Minute))
				if len(cmds) != 0 || s.NextFindingAt != t0.Add(time.Hour) {
					t.Errorf("next reconciliation %v, commands %q", s.NextFindingAt, describe(cmds))
				}
			},
		},
		{
			name:  "without finding sync nothing is periodic",
			state: with(loaded(), func(s *State) { s.WebhooksAt = t0 }),
			event: TimerFired{}, now: t0.Add(10 * time.Hour),
			want: []string{},
			check: func(t *testing.T, s State) {
				if !s.NextFindingAt.IsZero() || s.Wake() != s.NextSyncAt {
					t.Errorf("next finding %v wake %v", s.NextFindingAt, s.Wake())
				}
			},
		},
		// Webhooks.
		{
			name: "a fresh workflow with finding sync registers its webhooks", state: NewState(testOrg, testConn, nil),
			event: Loaded{snapshot(StatusActive, func(c *activities.ConnectionSnapshot) { c.FindingSync = true })}, now: t0,
			want: []string{"attrs active stale=false reauth=false", "mirror active stale=false", "sync 1 schedule", "finding register"},
			check: func(t *testing.T, s State) {
				if s.WebhookRegisterPending || !s.QueuePending || !s.FindingSync {
					t.Errorf("state: %+v", s.FindingCarried)
				}
				// Then the first reconciliation (never ran), then the queue.
				s, cmds := Step(s, FindingFinished{Op: FindingOpRegister, ExpiresAt: t0.Add(30 * day)}, t0.Add(time.Second))
				s, cmds2 := Step(s, FindingFinished{Op: FindingOpReconcile}, t0.Add(2*time.Second))
				if got := append(describe(cmds), describe(cmds2)...); !reflect.DeepEqual(got, []string{"finding reconcile", "finding drain 1"}) {
					t.Errorf("after registration: %q", got)
				}
				if s.WebhooksAt != t0.Add(time.Second) || s.WebhooksExpireAt != t0.Add(30*day) {
					t.Errorf("webhooks: %+v", s.FindingCarried)
				}
			},
		},
		{
			name:  "finding sync turned on by a configuration change registers webhooks",
			state: with(loaded(), func(s *State) { s.ConfigReloadPending = true }),
			event: Loaded{snapshot(StatusActive, func(c *activities.ConnectionSnapshot) { c.FindingSync = true })}, now: h,
			want: []string{"mirror active stale=false", "finding register"},
		},
		{
			name:  "every new finding-sync configuration registers again",
			state: with(findingOn(), func(s *State) { s.ConfigReloadPending = true }),
			event: Loaded{snapshot(StatusActive, func(c *activities.ConnectionSnapshot) { c.FindingSync = true })}, now: t0.Add(time.Minute),
			want: []string{"mirror active stale=false", "finding register"},
		},
		{
			name:  "finding sync turned off lets RegisterWebhooks remove them",
			state: with(findingOn(), func(s *State) { s.ConfigReloadPending = true }),
			event: Loaded{snapshot(StatusActive, nil)}, now: t0.Add(time.Minute),
			want: []string{"mirror active stale=false", "finding register"},
			check: func(t *testing.T, s State) {
				s, _ = Step(s, FindingFinished{Op: FindingOpRegister, Skipped: true}, t0.Add(2*time.Minute))
				if s.FindingSync || !s.NextFindingAt.IsZero() {
					t.Errorf("nothing periodic is left: %+v next %v", s.FindingCarried, s.NextFindingAt)
				}
			},
		},
		{
			name:  "a configuration change without finding sync calls no finding activity",
			state: with(loaded(), func(s *State) { s.ConfigReloadPending = true }),
			event: Loaded{snapshot(StatusActive, nil)}, now: h,
			want: []string{"mirror active stale=false"},
		},
		{
			name:  "a continued run does not register again",
			state: with(findingOn(), func(s *State) { s.Loaded = false }),
			event: Loaded{snapshot(StatusActive, func(c *activities.ConnectionSnapshot) { c.FindingSync = true })}, now: t0.Add(time.Minute),
			want: []string{"attrs active stale=false reauth=false", "mirror active stale=false"},
		},
		{
			name: "webhooks are refreshed a refresh interval after the registration",
			state: with(findingOn(), func(s *State) {
				s.WebhookRefreshInterval, s.ReconcileInterval, s.NextFindingAt = time.Hour, 2*time.Hour, t0.Add(time.Hour)
			}),
			event: TimerFired{}, now: t0.Add(time.Hour),
			want: []string{"finding refresh"},
		},
		{
			name: "Jira's expiry brings the refresh forward", state: lane(findingOn(), FindingOpRefresh),
			event: FindingFinished{Op: FindingOpRefresh, ExpiresAt: t0.Add(3 * day)}, now: t0.Add(time.Minute),
			want: []string{},
			check: func(t *testing.T, s State) {
				if due := s.webhookRefreshDue(); due != t0.Add(2*day) {
					t.Errorf("refresh due %v", due)
				}
			},
		},
		{
			name: "a skipped registration is never refreshed", state: lane(findingOn(), FindingOpRegister),
			event: FindingFinished{Op: FindingOpRegister, Skipped: true}, now: t0.Add(time.Minute),
			want: []string{},
			check: func(t *testing.T, s State) {
				if _, ok := s.findingReadyAt(FindingOpRefresh); ok || !s.WebhooksSkipped {
					t.Errorf("refresh wanted after a skipped registration: %+v", s.FindingCarried)
				}
			},
		},
		// Errors.
		{
			name:  "reauth_required from a drain waits for re-authorization like a sync",
			state: lane(loaded(), FindingOpDrain),
			event: FindingFinished{Op: FindingOpDrain, ErrorType: failure.TypeReauthRequired, Message: "invalid_grant"}, now: h,
			want: []string{"attrs needs_reauth stale=false reauth=true", "mirror needs_reauth stale=false connection.needs_reauth err=reauth_required"},
			check: func(t *testing.T, s State) {
				if !s.QueuePending || !s.NextFindingAt.IsZero() || !s.NextSyncAt.IsZero() || s.Wake() != t0.Add(2*day) {
					t.Errorf("only the stale clock runs, the queue stays pending: %+v", s)
				}
			},
		},
		{
			name: "signals while waiting for re-auth only set flags", state: needsReauth(loaded()),
			event: FindingsPending{}, now: h, want: []string{},
			check: func(t *testing.T, s State) {
				s, cmds := Step(s, JiraIssueChanged{Change: change(1)}, h)
				if len(cmds) != 0 || !s.QueuePending || len(s.Inbound) != 1 || !s.NextFindingAt.IsZero() {
					t.Errorf("commands %q, state %+v", describe(cmds), s.FindingCarried)
				}
			},
		},
		{
			name: "re-authorization resumes the sync and the finding work",
			state: with(needsReauth(loaded()), func(s *State) {
				s.QueuePending, s.Inbound = true, changes(1)
				s.FindingErrorOp, s.FindingErrorType, s.FindingError = FindingOpDrain, failure.TypeReauthRequired, "invalid_grant"
			}),
			event: Reauthorized{}, now: t0.Add(2 * time.Hour),
			want: []string{"attrs active stale=false reauth=false", "mirror active stale=false", "sync 2 reauthorized", "finding apply 1"},
			check: func(t *testing.T, s State) {
				if s.FindingErrorType != "" {
					t.Errorf("finding error kept: %+v", s.FindingCarried)
				}
			},
		},
		{
			name:  "a sync that then needs re-auth too is recorded without a second audit row",
			state: needsReauth(running(loaded(), 2, TriggerSchedule)),
			event: SyncFinished{Seq: 2, ErrorType: failure.TypeReauthRequired}, now: t0.Add(day),
			want: []string{"record-failure 2 reauth_required", "mirror needs_reauth stale=false err=reauth_required"},
		},
		{
			name: "revoked under a drain ends the workflow", state: lane(loaded(), FindingOpDrain),
			event: FindingFinished{Op: FindingOpDrain, ErrorType: failure.TypeRevoked}, now: h,
			want: []string{"attrs revoked stale=false reauth=false", "end"},
			check: func(t *testing.T, s State) {
				if !s.Ended || !s.Wake().IsZero() {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "a config error is recorded and not retried in a loop", state: lane(loaded(), FindingOpDrain),
			event: FindingFinished{Op: FindingOpDrain, ErrorType: failure.TypeConfig, Message: "issue_create_forbidden"}, now: h,
			want: []string{"mirror active stale=false err=config"},
			check: func(t *testing.T, s State) {
				if !s.QueuePending || s.FindingBackoffUntil != h.Add(DefaultReconcileInterval) || s.NextFindingAt != h.Add(DefaultReconcileInterval) {
					t.Errorf("state: %+v next %v", s.FindingCarried, s.NextFindingAt)
				}
				if s.LastErrorType != "" {
					t.Errorf("a finding error must not pose as a sync error: %q", s.LastErrorType)
				}
			},
		},
		{
			name: "a new configuration retries a config error at once",
			state: with(loaded(), func(s *State) {
				s.ConfigReloadPending, s.QueuePending, s.DrainSeq = true, true, 1
				s.FindingBackoffUntil, s.FindingErrorOp, s.FindingErrorType = h.Add(10*time.Minute), FindingOpDrain, failure.TypeConfig
			}),
			event: Loaded{snapshot(StatusActive, nil)}, now: h,
			want: []string{"mirror active stale=false err=config", "finding drain 2"},
		},
		{
			name:  "transient failures back off, doubling",
			state: with(lane(loaded(), FindingOpDrain), func(s *State) { s.FindingFailures = 2 }),
			event: FindingFinished{Op: FindingOpDrain, ErrorType: failure.TypeRateLimited, Message: "429"}, now: h,
			want: []string{"mirror active stale=false err=rate_limited"},
			check: func(t *testing.T, s State) {
				if s.FindingFailures != 3 || s.NextFindingAt != h.Add(4*time.Minute) {
					t.Errorf("state: %+v next %v", s.FindingCarried, s.NextFindingAt)
				}
			},
		},
		{
			name: "a failed apply puts its batch back before the changes received since",
			state: with(lane(findingOn(), FindingOpApply), func(s *State) {
				s.Applying, s.Inbound = changes(2), []findings.IssueChange{change(3)}
			}),
			event: FindingFinished{Op: FindingOpApply, ErrorType: failure.TypeTransient}, now: t0.Add(time.Minute),
			want: []string{"mirror active stale=false err=transient"},
			check: func(t *testing.T, s State) {
				if len(s.Inbound) != 3 || s.Inbound[0].DeliveryID != "delivery-1" || s.Inbound[2].DeliveryID != "delivery-3" ||
					s.ReconcileNeeded || s.Applying != nil || s.NextFindingAt != t0.Add(2*time.Minute) {
					t.Errorf("state: %+v applying %d next %v", s.FindingCarried, len(s.Applying), s.NextFindingAt)
				}
			},
		},
		{
			name: "a failed apply that would overflow the buffer is left to reconciliation",
			state: with(lane(findingOn(), FindingOpApply), func(s *State) {
				s.Applying, s.Inbound = changes(60), changes(60)
			}),
			event: FindingFinished{Op: FindingOpApply, ErrorType: failure.TypeConfig}, now: t0.Add(time.Minute),
			want: []string{"mirror active stale=false err=config"},
			check: func(t *testing.T, s State) {
				if len(s.Inbound) != 0 || !s.ReconcileNeeded {
					t.Errorf("state: %+v", s.FindingCarried)
				}
			},
		},
		{
			name:  "a refused batch is left to reconciliation",
			state: with(lane(findingOn(), FindingOpApply), func(s *State) { s.Applying = changes(2) }),
			event: FindingFinished{Op: FindingOpApply, ErrorType: failure.TypeInvalidInput}, now: t0.Add(time.Minute),
			want: []string{"mirror active stale=false err=invalid_input"},
			check: func(t *testing.T, s State) {
				if len(s.Inbound) != 0 || !s.ReconcileNeeded {
					t.Errorf("state: %+v", s.FindingCarried)
				}
			},
		},
		{
			name:  "a webhook failure does not hold back the queue",
			state: with(lane(findingOn(), FindingOpRegister), func(s *State) { s.QueuePending = true }),
			event: FindingFinished{Op: FindingOpRegister, ErrorType: failure.TypeTransient}, now: t0.Add(time.Minute),
			want: []string{"mirror active stale=false err=transient", "finding drain 1"},
			check: func(t *testing.T, s State) {
				if !s.WebhookRegisterPending || s.WebhookRetryAt != t0.Add(2*time.Minute) || !s.FindingBackoffUntil.IsZero() {
					t.Errorf("state: %+v", s.FindingCarried)
				}
			},
		},
		{
			name: "success clears the operation's error",
			state: with(lane(loaded(), FindingOpDrain), func(s *State) {
				s.FindingErrorOp, s.FindingErrorType, s.FindingError, s.FindingFailures = FindingOpDrain, failure.TypeTransient, "503", 2
			}),
			event: FindingFinished{Op: FindingOpDrain}, now: h,
			want: []string{"mirror active stale=false"},
			check: func(t *testing.T, s State) {
				if s.FindingErrorType != "" || s.FindingFailures != 0 {
					t.Errorf("state: %+v", s.FindingCarried)
				}
			},
		},
		{
			name: "the result of an operation not in flight is ignored", state: lane(loaded(), FindingOpDrain),
			event: FindingFinished{Op: FindingOpApply, ErrorType: failure.TypeReauthRequired}, now: h,
			want: []string{},
		},
		// Revoke, continue-as-new, new runs.
		{
			name:  "revoke stops the drain and the sync before cleaning up",
			state: lane(running(loaded(), 2, TriggerSchedule), FindingOpDrain),
			event: RevokeRequested{ActorType: "api_key", ActorID: "k1"}, now: t0.Add(day),
			want: []string{"cancel-sync", "cancel-finding", "revoke-cleanup api_key/k1", "attrs revoked stale=false reauth=false", "end"},
		},
		{
			name: "draining for continue-as-new starts no finding work", state: with(loaded(), func(s *State) { s.Draining = true }),
			event: FindingsPending{}, now: h,
			want: []string{},
			check: func(t *testing.T, s State) {
				if !s.QueuePending || !s.NextFindingAt.IsZero() || s.Wake() != t0.Add(2*day) {
					t.Errorf("state: %+v wake %v", s.FindingCarried, s.Wake())
				}
			},
		},
		{
			name: "a new run resets the lane and keeps the flags", state: with(lane(loaded(), FindingOpDrain), func(s *State) { s.QueuePending = true }),
			event: Started{}, now: h,
			want: []string{"load"},
			check: func(t *testing.T, s State) {
				if s.FindingRunning != "" || !s.QueuePending {
					t.Errorf("state: %+v", s)
				}
			},
		},
		{
			name: "nothing runs before the configuration is loaded", state: NewState(testOrg, testConn, nil),
			event: FindingsPending{}, now: t0,
			want: []string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.state
			beforeInbound := append([]findings.IssueChange(nil), tc.state.Inbound...)
			got, cmds := Step(tc.state, tc.event, tc.now)
			if d := describe(cmds); !reflect.DeepEqual(d, tc.want) {
				t.Errorf("commands:\n got  %q\n want %q", d, tc.want)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
			if !reflect.DeepEqual(before, tc.state) || !reflect.DeepEqual(beforeInbound, append([]findings.IssueChange(nil), tc.state.Inbound...)) {
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

func TestFindingBackoff(t *testing.T) {
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 15 * time.Minute, 15 * time.Minute}
	for i, w := range want {
		if got := findingBackoff(i + 1); got != w {
			t.Errorf("backoff after %d failures: %v, want %v", i+1, got, w)
		}
	}
	if got := findingBackoff(1000); got != maxFindingBackoff {
		t.Errorf("backoff after many failures: %v", got)
	}
}

// TestCarriedStateDoesNotGrowWithFindings feeds the machine the traffic of 10,000 findings —
// a nudge, an inbound change and an inbox nudge each, and the drains and inbox passes that follow
// — and checks that what a run carries to the next stays the same small size.
func TestCarriedStateDoesNotGrowWithFindings(t *testing.T) {
	s := findingOn()
	now := t0.Add(time.Minute)
	size := func() int {
		b, err := json.Marshal(s.Carry())
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	const findings = 10000
	remaining := findings
	maxSize := 0
	for i := range findings {
		now = now.Add(time.Second)
		s, _ = Step(s, FindingsPending{}, now)
		s, _ = Step(s, JiraIssueChanged{Change: change(i)}, now)
		s, _ = Step(s, InboxNudged{}, now)
		if i%25 == 0 && s.FindingRunning != "" {
			// Whatever runs finishes; a drain handles 25 findings, an inbox pass all but 10
			// of the deliveries so far.
			ev := FindingFinished{Op: s.FindingRunning}
			switch ev.Op {
			case FindingOpDrain:
				remaining = max(remaining-25, 0)
				ev.Handled, ev.Remaining = 25, remaining
			case FindingOpInbox:
				ev.Handled, ev.Remaining = i, 10
			}
			s, _ = Step(s, ev, now)
		}
		maxSize = max(maxSize, size())
	}
	if len(s.Inbound) > MaxInboundBuffer {
		t.Errorf("inbound buffer %d exceeds its bound", len(s.Inbound))
	}
	// The bound is the inbound buffer (MaxInboundBuffer changes of a few hundred bytes) plus a
	// constant; 10,000 findings must not add to it.
	bound := MaxInboundBuffer*400 + 2000
	if maxSize > bound {
		t.Errorf("carried state reached %d bytes, bound %d", maxSize, bound)
	}
	t.Logf("largest carried state: %d bytes; drain seq %d", maxSize, s.DrainSeq)
}

// TestMirrorShowsTheFindingError: the sync's own error wins; a finding error shows when the sync
// has none (or merely found no data).
func TestMirrorShowsTheFindingError(t *testing.T) {
	s := with(loaded(), func(s *State) {
		s.FindingErrorType, s.FindingError = failure.TypeConfig, "issue_create_forbidden"
	})
	if u := mirrorOf(s, ""); u.LastErrorKind != failure.TypeConfig || u.LastError != "issue_create_forbidden" {
		t.Errorf("mirror: %+v", u)
	}
	s.LastErrorType, s.LastError = failure.TypeTransient, "503"
	if u := mirrorOf(s, ""); u.LastErrorKind != failure.TypeTransient || u.LastError != "503" {
		t.Errorf("mirror: %+v", u)
	}
	s.LastErrorType = ErrTypeNoData
	if u := mirrorOf(s, ""); u.LastErrorKind != failure.TypeConfig {
		t.Errorf("mirror: %+v", u)
	}
}
