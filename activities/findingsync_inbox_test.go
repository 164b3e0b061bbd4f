package activities_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/findingsync"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// storeInbox stores changes in the connection's webhook inbox exactly as the webhook bridge does
// (findingsync.RecordDelivery); it returns how many were new deliveries.
func storeInbox(t *testing.T, h *harness, ref activities.ConnectionRef, chs ...findings.IssueChange) int {
	t.Helper()
	stored := 0
	for _, ch := range chs {
		inserted, err := findingsync.RecordDelivery(context.Background(), h.db, findingsync.Delivery{
			OrgID: ref.OrgID, ConnectionID: ref.ConnectionID, Change: ch})
		if err != nil {
			t.Fatal(err)
		}
		if inserted {
			stored++
		}
	}
	return stored
}

func (s *syncSite) applyInbox(max int) activities.InboxResult {
	s.t.Helper()
	val, err := s.env.ExecuteActivity(activities.NameApplyInboxChanges, activities.InboxInput{ConnectionRef: s.ref, Max: max})
	var res activities.InboxResult
	if err == nil {
		if err := val.Get(&res); err != nil {
			s.t.Fatal(err)
		}
	}
	s.record(res, err)
	if err != nil {
		s.t.Fatalf("apply inbox: %v", err)
	}
	return res
}

func pendingInbox(h *harness, ref activities.ConnectionRef) int {
	return h.count(`SELECT count(*) FROM webhook_deliveries WHERE connection_id = $1 AND change IS NOT NULL AND applied_at IS NULL`, ref.ConnectionID)
}

// humanMoves moves the issue through statuses as a person would and returns the one delivery
// each move produced, in order.
func (s *syncSite) humanMoves(key string, statuses ...string) []findings.IssueChange {
	s.t.Helper()
	var out []findings.IssueChange
	for _, to := range statuses {
		if err := s.srv.TransitionAsHuman(key, to); err != nil {
			s.t.Fatal(err)
		}
		chs := s.changes()
		if len(chs) != 1 || !chs[0].StatusChanged {
			s.t.Fatalf("%s: deliveries %+v", to, chs)
		}
		out = append(out, chs[0])
	}
	return out
}

// inboundAudits returns the "to" status of each finding.inbound_change audit row of the finding
// and the delivery ids they name, oldest first.
func (s *syncSite) inboundAudits(id uuid.UUID) (tos, deliveries []string) {
	s.t.Helper()
	rows, err := s.owner().Query(context.Background(),
		`SELECT metadata->>'to', metadata->>'delivery_id' FROM audit_log WHERE org_id = $1 AND action = $2 AND target_id = $3 ORDER BY id`,
		s.org, findingsync.ActionInboundChange, id.String())
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var to, d string
		if err := rows.Scan(&to, &d); err != nil {
			s.t.Fatal(err)
		}
		tos, deliveries = append(tos, to), append(deliveries, d)
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return tos, deliveries
}

// TestApplyInboxInOrderOnce: the inbox is applied in arrival order, each delivery once; a
// redelivery is not stored again, the same change under another delivery id and a change about an
// unlinked issue are taken off the inbox without effect, and a second pass finds nothing.
func TestApplyInboxInOrderOnce(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	s.mustDrain()
	key := s.mustIssue(id).Key
	s.changes() // the issue_created delivery
	moves := s.humanMoves(key, "In Progress", "Won't Do", "To Do", "In Progress", "Done")

	if n := storeInbox(t, s.harness, s.ref, moves...); n != 5 {
		t.Fatalf("stored %d deliveries", n)
	}
	// Jira retries a delivery: the bridge does not store it again.
	if n := storeInbox(t, s.harness, s.ref, moves[1]); n != 0 {
		t.Fatalf("a redelivery was stored again")
	}
	sameAgain := moves[4]
	sameAgain.DeliveryID = "another-id-for-the-same-change"
	foreign := moves[0]
	foreign.DeliveryID, foreign.IssueID, foreign.IssueKey = "foreign-1", "999999", "SEC-999"
	storeInbox(t, s.harness, s.ref, sameAgain, foreign)
	if n := pendingInbox(s.harness, s.ref); n != 7 {
		t.Fatalf("%d pending", n)
	}

	res := s.applyInbox(0)
	if res.Applied != 5 || res.Ignored != 2 || res.Echoes != 0 || res.Requeued != 0 || res.Remaining != 0 {
		t.Errorf("pass %+v", res)
	}
	if st, src := s.findingStatus(id); st != string(findings.StatusResolved) || src != "jira" {
		t.Errorf("finding %s (%s)", st, src)
	}
	// Arrival order: each move applied in turn (out of order, older reports would be ignored).
	tos, deliveries := s.inboundAudits(id)
	if want := []string{"triaged", "accepted", "open", "triaged", "resolved"}; !slices.Equal(tos, want) {
		t.Errorf("applied %q, want %q", tos, want)
	}
	want := make([]string, len(moves))
	for i, m := range moves {
		want[i] = m.DeliveryID
	}
	if !slices.Equal(deliveries, want) {
		t.Errorf("audited deliveries %q, want %q", deliveries, want)
	}
	if n := pendingInbox(s.harness, s.ref); n != 0 {
		t.Errorf("%d still pending", n)
	}
	if res := s.applyInbox(0); res != (activities.InboxResult{}) {
		t.Errorf("second pass %+v", res)
	}
	if n := s.audits(findingsync.ActionInboundChange); n != 5 {
		t.Errorf("%d inbound audit rows", n)
	}
}

// TestApplyInboxBatchesAndReportsRemaining: a pass takes at most Max changes and says how many
// are left.
func TestApplyInboxBatchesAndReportsRemaining(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	s.mustDrain()
	key := s.mustIssue(id).Key
	s.changes()
	storeInbox(t, s.harness, s.ref, s.humanMoves(key, "In Progress", "Won't Do", "To Do", "In Progress", "Done")...)

	first := s.applyInbox(3)
	second := s.applyInbox(3)
	if first.Applied != 3 || first.Remaining != 2 || second.Applied != 2 || second.Remaining != 0 {
		t.Errorf("passes %+v, %+v", first, second)
	}
	if st, _ := s.findingStatus(id); st != string(findings.StatusResolved) {
		t.Errorf("finding %s", st)
	}
	val, err := s.env.ExecuteActivity(activities.NameApplyInboxChanges, activities.InboxInput{ConnectionRef: s.ref, Max: activities.MaxApplyChanges + 1})
	if err == nil || val != nil {
		t.Errorf("a pass over the bound was accepted")
	}
}

// cancelAfter cancels a context once the k-th record with message msg has been logged: with the
// activities' "change applied" line, a pass is interrupted right after its k-th change committed,
// as when its worker dies there.
type cancelAfter struct {
	slog.Handler
	msg    string
	k      int32
	seen   *atomic.Int32
	cancel context.CancelFunc
}

func (h cancelAfter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg && h.seen.Add(1) == h.k {
		h.cancel()
	}
	return h.Handler.Handle(ctx, r)
}

func (h cancelAfter) WithAttrs(as []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(as)
	return h
}

func (h cancelAfter) WithGroup(name string) slog.Handler {
	h.Handler = h.Handler.WithGroup(name)
	return h
}

// TestApplyInboxExactlyOnceAcrossAnInterruptedPass: a pass stopped after some changes committed
// (cancellation: a worker that died, a heartbeat timeout) leaves exactly the rest pending; the
// retry applies only those. Two passes running at once (a retry while a stale attempt still runs)
// apply each change once between them.
func TestApplyInboxExactlyOnceAcrossAnInterruptedPass(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	s.mustDrain()
	key := s.mustIssue(id).Key
	s.changes()
	cycle := []string{"In Progress", "Won't Do", "To Do", "In Progress", "Cancelled", "To Do"}
	var moves []findings.IssueChange
	for range 4 {
		moves = append(moves, s.humanMoves(key, cycle...)...)
	}
	storeInbox(t, s.harness, s.ref, moves...)
	total := len(moves)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const k = 9
	hooked := slog.New(cancelAfter{Handler: s.log.Handler(), msg: "Jira change applied to finding", k: k, seen: &atomic.Int32{}, cancel: cancel})
	crashing, err := activities.New(activities.Deps{DB: s.db, Connections: s.conns, Log: hooked, Version: "test-1.2.3", Now: s.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	first, err := crashing.ApplyInboxChanges(ctx, activities.InboxInput{ConnectionRef: s.ref})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted pass: %+v, %v", first, err)
	}
	if first.Applied != k || pendingInbox(s.harness, s.ref) != total-k {
		t.Fatalf("interrupted after %d applied, %d pending; want %d and %d", first.Applied, pendingInbox(s.harness, s.ref), k, total-k)
	}
	retry := s.applyInbox(0)
	if retry.Applied != total-k || retry.Ignored != 0 || retry.Remaining != 0 {
		t.Errorf("retry %+v, want the %d changes left", retry, total-k)
	}
	_, deliveries := s.inboundAudits(id)
	want := make([]string, total)
	for i, m := range moves {
		want[i] = m.DeliveryID
	}
	if !slices.Equal(deliveries, want) {
		t.Errorf("audited deliveries %q, want each once in order %q", deliveries, want)
	}

	// Two passes at once over a new backlog.
	var more []findings.IssueChange
	for range 3 {
		more = append(more, s.humanMoves(key, cycle...)...)
	}
	storeInbox(t, s.harness, s.ref, more...)
	var wg sync.WaitGroup
	results := make([]activities.InboxResult, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			results[i], errs[i] = s.acts.ApplyInboxChanges(context.Background(), activities.InboxInput{ConnectionRef: s.ref})
		})
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("concurrent passes: %v, %v", errs[0], errs[1])
	}
	if applied := results[0].Applied + results[1].Applied; applied != len(more) {
		t.Errorf("concurrent passes applied %d (%+v, %+v), want %d", applied, results[0], results[1], len(more))
	}
	if _, deliveries := s.inboundAudits(id); len(deliveries) != total+len(more) {
		t.Errorf("%d inbound audit rows, want %d", len(deliveries), total+len(more))
	}
	if n := pendingInbox(s.harness, s.ref); n != 0 {
		t.Errorf("%d pending", n)
	}
}

// TestApplyInboxEchoesOfOurOwnPush: the deliveries of the connector's own transition, stored in
// the inbox, are echoes exactly as when they were signalled.
func TestApplyInboxEchoesOfOurOwnPush(t *testing.T) {
	s := newSyncSite(t, siteOpts{})
	id := s.finding("F-1", findings.SeverityHigh, findings.StatusOpen)
	s.mustDrain()
	s.changes()
	s.setStatus(id, findings.StatusResolved)
	if res := s.mustDrain(); res.Transitions != 1 {
		t.Fatalf("drain %+v", res)
	}
	storeInbox(t, s.harness, s.ref, s.changes()...)
	res := s.applyInbox(0)
	if res.Applied != 0 || res.Echoes < 1 || res.Echoes+res.Ignored != 2 || res.Remaining != 0 {
		t.Errorf("pass %+v", res)
	}
	if st, src := s.findingStatus(id); st != "resolved" || src != "api" {
		t.Errorf("finding after echoes: %s (%s)", st, src)
	}
	if n := s.audits(findingsync.ActionInboundChange); n != 0 {
		t.Errorf("%d inbound audit rows after echoes", n)
	}
}

// TestApplyInboxWithoutFindingSync: with finding sync off the pending changes have nothing to
// apply to; they are taken off the inbox so it does not grow, without a Jira call.
func TestApplyInboxWithoutFindingSync(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	var chs []findings.IssueChange
	for i := range 7 {
		chs = append(chs, findings.IssueChange{
			DeliveryID: fmt.Sprintf("d-%d", i), Event: "jira:issue_updated", IssueID: fmt.Sprint(10000 + i), IssueKey: fmt.Sprintf("SEC-%d", i),
			Status: findings.JiraStatus{ID: "10002", Name: "Done", CategoryKey: "done"}, StatusChanged: true,
			TimestampMillis: time.Now().UnixMilli(), ReceivedAt: time.Now().UTC(),
		})
	}
	storeInbox(t, h, ref, chs...)
	run := func(max int) activities.InboxResult {
		t.Helper()
		val, err := h.env().ExecuteActivity(activities.NameApplyInboxChanges, activities.InboxInput{ConnectionRef: ref, Max: max})
		if err != nil {
			t.Fatal(err)
		}
		var res activities.InboxResult
		if err := val.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := run(5); res.Ignored != 5 || res.Applied != 0 || res.Remaining != 2 {
		t.Errorf("first pass %+v", res)
	}
	if res := run(0); res.Ignored != 2 || res.Remaining != 0 {
		t.Errorf("second pass %+v", res)
	}
	if n := pendingInbox(h, ref); n != 0 {
		t.Errorf("%d pending", n)
	}
	if n := jiraRequests(srv); n != 0 {
		t.Errorf("%d Jira requests", n)
	}
}
