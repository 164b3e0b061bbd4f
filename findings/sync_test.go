package findings

import (
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jira"
)

// Statuses of a site whose default workflow uses "To Do" for new issues (like the simulator and
// Jira Cloud's default software workflow).
var (
	stToDo       = JiraStatus{ID: "10000", Name: "To Do", CategoryKey: "new"}
	stInProgress = JiraStatus{ID: "3", Name: "In Progress", CategoryKey: "indeterminate"}
	stDone       = JiraStatus{ID: "10001", Name: "Done", CategoryKey: "done"}
	stWontDo     = JiraStatus{ID: "10002", Name: "Won't Do", CategoryKey: "done"}
	stCancelled  = JiraStatus{ID: "10003", Name: "Cancelled", CategoryKey: "done"}
)

func TestJiraStatusSame(t *testing.T) {
	tests := []struct {
		a, b JiraStatus
		want bool
	}{
		{stDone, stDone, true},
		{stDone, JiraStatus{Name: "done"}, true},
		{stDone, JiraStatus{ID: "10001", Name: "Renamed"}, true},
		{stDone, JiraStatus{ID: "99", Name: "Done"}, false},
		{stDone, stWontDo, false},
		{JiraStatus{CategoryKey: "done"}, JiraStatus{CategoryKey: "done"}, false},
		{JiraStatus{}, JiraStatus{}, false},
		{JiraStatus{Name: " Done "}, JiraStatus{Name: "DONE"}, true},
	}
	for _, tt := range tests {
		if got := tt.a.Same(tt.b); got != tt.want {
			t.Errorf("%+v.Same(%+v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestStatusConversions(t *testing.T) {
	j := jira.Status{ID: "3", Name: "In Progress", Category: jira.StatusCategory{ID: 4, Key: "indeterminate", Name: "In Progress"}}
	if got := StatusFromJira(j); got != stInProgress {
		t.Errorf("StatusFromJira = %+v", got)
	}
}

func TestOutboundTarget(t *testing.T) {
	c := validConfig()
	tests := []struct {
		status Status
		want   jira.Target
	}{
		{StatusOpen, jira.Target{StatusName: "Open", CategoryKey: "new"}},
		{StatusTriaged, jira.Target{StatusName: "In Progress", CategoryKey: "indeterminate"}},
		{StatusResolved, jira.Target{StatusName: "Done", CategoryKey: "done", Resolution: "Done"}},
		{StatusAccepted, jira.Target{StatusName: "Won't Do", CategoryKey: "done", Resolution: "Won't Do"}},
		{StatusFalsePositive, jira.Target{StatusName: "Cancelled", CategoryKey: "done", Resolution: "Cancelled"}},
		{"bogus", jira.Target{}},
	}
	for _, tt := range tests {
		if got := OutboundTarget(c, tt.status); got != tt.want {
			t.Errorf("OutboundTarget(%s) = %+v, want %+v", tt.status, got, tt.want)
		}
	}
	c.StatusMap[StatusOpen] = StatusTarget{ID: "10000", Name: "Backlog", CategoryKey: "new"}
	if got := OutboundTarget(c, StatusOpen); got != (jira.Target{StatusID: "10000", StatusName: "Backlog", CategoryKey: "new"}) {
		t.Errorf("custom target %+v", got)
	}
}

func TestInboundStatus(t *testing.T) {
	def := validConfig()
	custom := validConfig()
	custom.StatusMap[StatusTriaged] = StatusTarget{ID: "20000", Name: "Investigating", CategoryKey: "indeterminate"}
	custom.StatusMap[StatusAccepted] = StatusTarget{Name: "Risk Accepted", CategoryKey: "done"}
	custom.StatusMap[StatusOpen] = StatusTarget{Name: "Done", CategoryKey: "new"} // pathological, but the map wins
	custom.StatusMap[StatusResolved] = StatusTarget{Name: "Fixed", CategoryKey: "done"}
	tests := []struct {
		name string
		cfg  SyncConfig
		in   JiraStatus
		want Status
		ok   bool
	}{
		{"Done by name", def, stDone, StatusResolved, true},
		{"Won't Do by name", def, stWontDo, StatusAccepted, true},
		{"Cancelled by name", def, stCancelled, StatusFalsePositive, true},
		{"In Progress by name", def, stInProgress, StatusTriaged, true},
		{"Open by name", def, JiraStatus{Name: "Open", CategoryKey: "new"}, StatusOpen, true},
		{"To Do alias", def, stToDo, StatusOpen, true},
		{"Reopened alias (indeterminate category on some sites)", def, JiraStatus{Name: "Reopened", CategoryKey: "indeterminate"}, StatusOpen, true},
		{"name is case-insensitive", def, JiraStatus{Name: "wOn'T dO"}, StatusAccepted, true},
		{"name without category", def, JiraStatus{Name: "Cancelled"}, StatusFalsePositive, true},
		{"Won't Fix alias", def, JiraStatus{Name: "Won't Fix", CategoryKey: "done"}, StatusAccepted, true},
		{"Canceled US spelling", def, JiraStatus{Name: "Canceled", CategoryKey: "done"}, StatusFalsePositive, true},
		{"unknown done status by category", def, JiraStatus{Name: "Closed", CategoryKey: "done"}, StatusResolved, true},
		{"unknown indeterminate status", def, JiraStatus{Name: "In Review", CategoryKey: "indeterminate"}, StatusTriaged, true},
		{"unknown new status", def, JiraStatus{Name: "Backlog", CategoryKey: "new"}, StatusOpen, true},
		{"category key case", def, JiraStatus{Name: "Shipped", CategoryKey: "DONE"}, StatusResolved, true},
		{"undefined category", def, JiraStatus{Name: "Limbo", CategoryKey: "undefined"}, "", false},
		{"nothing known", def, JiraStatus{}, "", false},
		{"id only, unknown", def, JiraStatus{ID: "777"}, "", false},
		{"custom id wins over name", custom, JiraStatus{ID: "20000", Name: "Cancelled", CategoryKey: "done"}, StatusTriaged, true},
		{"custom name", custom, JiraStatus{Name: "risk accepted", CategoryKey: "done"}, StatusAccepted, true},
		{"map beats alias", custom, JiraStatus{Name: "Done", CategoryKey: "done"}, StatusOpen, true},
		{"alias still applies", custom, JiraStatus{Name: "Won't Do", CategoryKey: "done"}, StatusAccepted, true},
		{"custom name Fixed", custom, JiraStatus{Name: "Fixed", CategoryKey: "done"}, StatusResolved, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := InboundStatus(tt.cfg, tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("InboundStatus(%+v) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestDefaultMapRoundTrip checks that every finding status survives out and back in through the
// default map, whether Jira reports the target's name or only its category's status.
func TestDefaultMapRoundTrip(t *testing.T) {
	c := validConfig()
	for _, s := range Statuses() {
		target := OutboundTarget(c, s)
		got, ok := InboundStatus(c, JiraStatus{Name: target.StatusName, CategoryKey: target.CategoryKey})
		if !ok || got != s {
			t.Errorf("%s → %+v → %q, %v", s, target, got, ok)
		}
	}
}

var (
	t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Minute)
	t2 = t0.Add(2 * time.Minute)
	t3 = t0.Add(3 * time.Minute)
)

func TestDecideOutbound(t *testing.T) {
	c := validConfig()
	linked := LinkState{IssueKey: "SEC-1"}
	tests := []struct {
		name    string
		finding Status
		origin  Origin
		link    LinkState
		want    OutboundOutcome
	}{
		{"from jira is never pushed back", StatusResolved, OriginJira, LinkState{IssueKey: "SEC-1", LastJiraStatus: stToDo}, OutboundFromJira},
		{"no issue", StatusResolved, OriginPlatform, LinkState{}, OutboundNoIssue},
		{"unknown jira status: try", StatusResolved, OriginPlatform, linked, OutboundTransition},
		{"jira in To Do, finding resolved", StatusResolved, OriginPlatform, LinkState{IssueKey: "SEC-1", LastJiraStatus: stToDo, LastJiraChangeAt: t0}, OutboundTransition},
		{"jira already Done", StatusResolved, OriginPlatform, LinkState{IssueKey: "SEC-1", LastJiraStatus: stDone, LastJiraChangeAt: t0}, OutboundAlreadyThere},
		{"jira in another done status that means resolved", StatusResolved, OriginPlatform, LinkState{IssueKey: "SEC-1", LastJiraStatus: JiraStatus{Name: "Closed", CategoryKey: "done"}}, OutboundAlreadyThere},
		{"jira Done but finding accepted", StatusAccepted, OriginPlatform, LinkState{IssueKey: "SEC-1", LastJiraStatus: stDone}, OutboundTransition},
		{"reopen: finding open, jira Done", StatusOpen, OriginPlatform, LinkState{IssueKey: "SEC-1", LastJiraStatus: stDone}, OutboundTransition},
		{"jira To Do counts as open", StatusOpen, OriginPlatform, LinkState{IssueKey: "SEC-1", LastJiraStatus: stToDo}, OutboundAlreadyThere},
		{"awaiting echo: pushed status is believed", StatusResolved, OriginPlatform,
			LinkState{IssueKey: "SEC-1", LastPushedStatus: stDone, AwaitingEcho: true, LastJiraStatus: stInProgress}, OutboundAlreadyThere},
		{"awaiting echo, finding moved on", StatusTriaged, OriginPlatform,
			LinkState{IssueKey: "SEC-1", LastPushedStatus: stDone, AwaitingEcho: true, LastJiraStatus: stInProgress}, OutboundTransition},
		{"echo consumed: jira status is believed", StatusResolved, OriginPlatform,
			LinkState{IssueKey: "SEC-1", LastPushedStatus: stDone, LastJiraStatus: stToDo, LastJiraChangeAt: t2}, OutboundTransition},
		{"unmapped jira status: transition", StatusOpen, OriginPlatform, LinkState{IssueKey: "SEC-1", LastJiraStatus: JiraStatus{Name: "Limbo", CategoryKey: "undefined"}}, OutboundTransition},
		{"unmapped finding status", "bogus", OriginPlatform, linked, OutboundUnmappedStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideOutbound(c, tt.finding, tt.origin, tt.link)
			if d.Outcome != tt.want {
				t.Fatalf("outcome %q, want %q", d.Outcome, tt.want)
			}
			if d.Transition() != (tt.want == OutboundTransition) {
				t.Error("Transition() disagrees with the outcome")
			}
			wantTarget := jira.Target{}
			if tt.want == OutboundTransition {
				wantTarget = OutboundTarget(c, tt.finding)
			}
			if d.Target != wantTarget {
				t.Errorf("target %+v, want %+v", d.Target, wantTarget)
			}
		})
	}
}

func TestAfterPush(t *testing.T) {
	l := LinkState{IssueKey: "SEC-1", LastJiraStatus: stToDo, LastJiraChangeAt: t0}
	moved := l.AfterPush(stInProgress, true, t1)
	if moved.LastPushedStatus != stInProgress || !moved.LastPushedAt.Equal(t1) || !moved.AwaitingEcho ||
		moved.LastJiraStatus != stToDo || !moved.LastJiraChangeAt.Equal(t0) {
		t.Errorf("changed push: %+v", moved)
	}
	same := l.AfterPush(stToDo, false, t1)
	if same.AwaitingEcho || same.LastJiraStatus != stToDo || same.LastPushedStatus != stToDo {
		t.Errorf("unchanged push: %+v", same)
	}
	// An unchanged push also corrects a stale belief, so the next decision makes no call.
	stale := LinkState{IssueKey: "SEC-1", LastJiraStatus: stToDo, LastJiraChangeAt: t0}.AfterPush(stDone, false, t1)
	if d := DecideOutbound(validConfig(), StatusResolved, OriginPlatform, stale); d.Outcome != OutboundAlreadyThere {
		t.Errorf("after an unchanged push: %q", d.Outcome)
	}
}

func TestDecideInbound(t *testing.T) {
	c := validConfig()
	pushedDone := LinkState{IssueKey: "SEC-1", LastPushedStatus: stDone, LastPushedAt: t1, AwaitingEcho: true, LastJiraStatus: stInProgress, LastJiraChangeAt: t0}
	tests := []struct {
		name       string
		finding    Status
		link       LinkState
		change     IssueStatusChange
		want       InboundOutcome
		wantStatus Status
	}{
		{"first report applies", StatusOpen, LinkState{IssueKey: "SEC-1"}, IssueStatusChange{IssueKey: "SEC-1", To: stWontDo, At: t1}, InboundApply, StatusAccepted},
		{"cancelled → false positive", StatusOpen, LinkState{IssueKey: "SEC-1"}, IssueStatusChange{IssueKey: "SEC-1", To: stCancelled, At: t1}, InboundApply, StatusFalsePositive},
		{"done → resolved", StatusTriaged, LinkState{IssueKey: "SEC-1", LastJiraStatus: stInProgress, LastJiraChangeAt: t0}, IssueStatusChange{To: stDone, At: t1}, InboundApply, StatusResolved},
		{"reopen in jira", StatusResolved, LinkState{IssueKey: "SEC-1", LastJiraStatus: stDone, LastJiraChangeAt: t0}, IssueStatusChange{To: stToDo, At: t1}, InboundApply, StatusOpen},
		{"in sync", StatusResolved, LinkState{IssueKey: "SEC-1"}, IssueStatusChange{To: stDone, At: t1}, InboundInSync, ""},
		{"unmapped", StatusOpen, LinkState{IssueKey: "SEC-1"}, IssueStatusChange{To: JiraStatus{Name: "Limbo", CategoryKey: "undefined"}, At: t1}, InboundUnmapped, ""},
		{"echo of our push", StatusResolved, pushedDone, IssueStatusChange{To: stDone, At: t1}, InboundEcho, ""},
		{"echo recognised by name only", StatusResolved, pushedDone, IssueStatusChange{To: JiraStatus{Name: "done"}, At: t1}, InboundEcho, ""},
		{"echo even if finding moved on meanwhile", StatusTriaged, pushedDone, IssueStatusChange{To: stDone, At: t1}, InboundEcho, ""},
		{"other status while awaiting echo is real", StatusResolved, pushedDone, IssueStatusChange{To: stToDo, At: t2}, InboundApply, StatusOpen},
		{"same status later, not awaiting: real", StatusOpen,
			LinkState{IssueKey: "SEC-1", LastPushedStatus: stDone, LastPushedAt: t1, LastJiraStatus: stToDo, LastJiraChangeAt: t2},
			IssueStatusChange{To: stDone, At: t3}, InboundApply, StatusResolved},
		{"stale: older than last applied", StatusOpen, LinkState{IssueKey: "SEC-1", LastJiraStatus: stToDo, LastJiraChangeAt: t2}, IssueStatusChange{To: stDone, At: t1}, InboundStale, ""},
		{"stale echo after a human change", StatusOpen,
			LinkState{IssueKey: "SEC-1", LastPushedStatus: stDone, LastPushedAt: t1, LastJiraStatus: stToDo, LastJiraChangeAt: t2},
			IssueStatusChange{To: stDone, At: t1}, InboundStale, ""},
		{"duplicate", StatusOpen, LinkState{IssueKey: "SEC-1", LastJiraStatus: stToDo, LastJiraChangeAt: t1}, IssueStatusChange{To: stToDo, At: t1}, InboundDuplicate, ""},
		{"same time, other status", StatusOpen, LinkState{IssueKey: "SEC-1", LastJiraStatus: stToDo, LastJiraChangeAt: t1}, IssueStatusChange{To: stInProgress, At: t1}, InboundApply, StatusTriaged},
		{"other issue", StatusOpen, LinkState{IssueKey: "SEC-1"}, IssueStatusChange{IssueKey: "SEC-2", To: stDone, At: t1}, InboundOtherIssue, ""},
		{"issue key case-insensitive", StatusOpen, LinkState{IssueKey: "SEC-1"}, IssueStatusChange{IssueKey: "sec-1", To: stDone, At: t1}, InboundApply, StatusResolved},
		{"no time", StatusOpen, LinkState{IssueKey: "SEC-1"}, IssueStatusChange{To: stDone}, InboundInvalid, ""},
		{"no status", StatusOpen, LinkState{IssueKey: "SEC-1"}, IssueStatusChange{At: t1}, InboundInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideInbound(c, tt.finding, tt.link, tt.change)
			if d.Outcome != tt.want || d.Status != tt.wantStatus {
				t.Fatalf("got %q %q, want %q %q", d.Outcome, d.Status, tt.want, tt.wantStatus)
			}
			if d.Apply() != (tt.want == InboundApply) {
				t.Error("Apply() disagrees with the outcome")
			}
			accepted := tt.want == InboundApply || tt.want == InboundEcho || tt.want == InboundInSync || tt.want == InboundUnmapped
			if d.UpdateLink != accepted {
				t.Fatalf("UpdateLink = %v", d.UpdateLink)
			}
			if !accepted {
				if d.Link != tt.link {
					t.Errorf("ignored report changed the link: %+v", d.Link)
				}
				return
			}
			if d.Link.LastJiraStatus != tt.change.To || !d.Link.LastJiraChangeAt.Equal(tt.change.At) || d.Link.AwaitingEcho {
				t.Errorf("link not updated: %+v", d.Link)
			}
			if d.Link.LastPushedStatus != tt.link.LastPushedStatus || d.Link.IssueKey != tt.link.IssueKey {
				t.Errorf("link lost its push record: %+v", d.Link)
			}
		})
	}
}

// syncSim is a tiny model of one finding and its issue driven only by the decision functions, to
// check whole sequences: echoes, out-of-order deliveries and reopen in both directions.
type syncSim struct {
	t       *testing.T
	cfg     SyncConfig
	finding Status
	link    LinkState
	jira    JiraStatus // the issue's real status
	clock   time.Time  // Jira's clock
	pushes  int
}

// platformSets changes the finding through jiraconnect and runs the outbound decision. It returns
// the status change Jira will report for the transition, if any.
func (s *syncSim) platformSets(st Status) *IssueStatusChange {
	s.finding = st
	d := DecideOutbound(s.cfg, st, OriginPlatform, s.link)
	if !d.Transition() {
		return nil
	}
	s.pushes++
	to := map[Status]JiraStatus{StatusOpen: stToDo, StatusTriaged: stInProgress, StatusResolved: stDone, StatusAccepted: stWontDo, StatusFalsePositive: stCancelled}[st]
	changed := !to.Same(s.jira)
	s.clock = s.clock.Add(time.Second)
	s.jira = to
	s.link = s.link.AfterPush(to, changed, s.clock)
	if !changed {
		return nil
	}
	return &IssueStatusChange{IssueKey: "SEC-1", To: to, At: s.clock}
}

// humanSets moves the issue in Jira and returns the report Jira will deliver.
func (s *syncSim) humanSets(to JiraStatus) IssueStatusChange {
	s.clock = s.clock.Add(time.Second)
	s.jira = to
	return IssueStatusChange{IssueKey: "SEC-1", To: to, At: s.clock}
}

// deliver processes a report as the workflow would: decide, store the link, apply to the finding
// and then run the outbound decision for a change caused by Jira.
func (s *syncSim) deliver(ch IssueStatusChange) InboundOutcome {
	d := DecideInbound(s.cfg, s.finding, s.link, ch)
	if d.UpdateLink {
		s.link = d.Link
	}
	if d.Apply() {
		s.finding = d.Status
		if out := DecideOutbound(s.cfg, s.finding, OriginJira, s.link); out.Transition() {
			s.t.Fatalf("a change from Jira was pushed back")
		}
		// Even a caller that forgot the origin would find Jira already there.
		if out := DecideOutbound(s.cfg, s.finding, OriginPlatform, s.link); out.Transition() {
			s.t.Fatalf("after applying %+v the outbound decision wants to transition again", ch)
		}
	}
	return d.Outcome
}

func (s *syncSim) converged() {
	s.t.Helper()
	if got, ok := InboundStatus(s.cfg, s.jira); !ok || got != s.finding {
		s.t.Fatalf("finding %q but issue in %q", s.finding, s.jira.Name)
	}
}

func TestSyncSequences(t *testing.T) {
	newSim := func(t *testing.T) *syncSim {
		return &syncSim{t: t, cfg: validConfig(), finding: StatusOpen, jira: stToDo, clock: t0,
			link: LinkState{IssueKey: "SEC-1", LastJiraStatus: stToDo, LastJiraChangeAt: t0}}
	}
	t.Run("push, echo, no ping-pong", func(t *testing.T) {
		s := newSim(t)
		echo := s.platformSets(StatusResolved)
		if echo == nil || s.pushes != 1 {
			t.Fatal("no transition for resolved")
		}
		if o := s.deliver(*echo); o != InboundEcho {
			t.Fatalf("echo delivered as %q", o)
		}
		if o := s.deliver(*echo); o != InboundDuplicate {
			t.Fatalf("redelivered echo as %q", o)
		}
		if s.platformSets(StatusResolved) != nil || s.pushes != 1 {
			t.Fatal("pushed again although Jira is there")
		}
		s.converged()
	})
	t.Run("reopen in Jira, then resolve again from the platform", func(t *testing.T) {
		s := newSim(t)
		echo := s.platformSets(StatusResolved)
		s.deliver(*echo)
		if o := s.deliver(s.humanSets(stToDo)); o != InboundApply || s.finding != StatusOpen {
			t.Fatalf("reopen: %q, finding %q", o, s.finding)
		}
		s.converged()
		echo = s.platformSets(StatusResolved)
		if echo == nil {
			t.Fatal("resolving again did not transition")
		}
		s.deliver(*echo)
		s.converged()
	})
	t.Run("reopen from the platform", func(t *testing.T) {
		s := newSim(t)
		s.deliver(*s.platformSets(StatusAccepted))
		echo := s.platformSets(StatusOpen)
		if echo == nil || s.jira != stToDo {
			t.Fatal("reopen not pushed")
		}
		if o := s.deliver(*echo); o != InboundEcho {
			t.Fatalf("reopen echo: %q", o)
		}
		s.converged()
	})
	t.Run("person moves the issue to the pushed status later", func(t *testing.T) {
		s := newSim(t)
		s.deliver(*s.platformSets(StatusResolved))
		s.deliver(s.humanSets(stInProgress))
		if s.finding != StatusTriaged {
			t.Fatalf("finding %q", s.finding)
		}
		if o := s.deliver(s.humanSets(stDone)); o != InboundApply || s.finding != StatusResolved {
			t.Fatalf("second Done treated as %q", o)
		}
		s.converged()
	})
	t.Run("echo lost, reconciliation confirms", func(t *testing.T) {
		s := newSim(t)
		s.platformSets(StatusFalsePositive) // the webhook never arrives
		if o := s.deliver(IssueStatusChange{IssueKey: "SEC-1", To: s.jira, At: s.clock.Add(time.Minute)}); o != InboundEcho {
			t.Fatalf("reconciled status: %q", o)
		}
		s.converged()
	})
	t.Run("webhooks out of order", func(t *testing.T) {
		s := newSim(t)
		a := s.humanSets(stInProgress)
		b := s.humanSets(stWontDo)
		if o := s.deliver(b); o != InboundApply {
			t.Fatalf("newer: %q", o)
		}
		if o := s.deliver(a); o != InboundStale {
			t.Fatalf("older after newer: %q", o)
		}
		if s.finding != StatusAccepted {
			t.Fatalf("finding %q", s.finding)
		}
		s.converged()
	})
	t.Run("race: person moves just before our transition lands, reports in either order", func(t *testing.T) {
		for _, personFirst := range []bool{true, false} {
			s := newSim(t)
			s.finding = StatusTriaged
			s.deliver(s.humanSets(stInProgress))
			human := s.humanSets(stCancelled) // the person cancels ...
			s.jira = stInProgress             // ... but our transition was decided on the old state
			echo := s.platformSets(StatusResolved)
			if echo == nil {
				t.Fatal("no push")
			}
			if personFirst {
				s.deliver(human)
				s.deliver(*echo)
			} else {
				s.deliver(*echo)
				if o := s.deliver(human); o != InboundStale {
					t.Fatalf("late human report: %q", o)
				}
			}
			s.converged()
		}
	})
}
