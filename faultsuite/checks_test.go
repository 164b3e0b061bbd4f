package faultsuite

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/jiraconnect/jiraconnect/findings"
)

// The invariants every test checks once its faults are over and the system has converged.

// finishedOutcomes are the terminal outcomes of a sync that stored evidence.
const finishedOutcomes = `('success', 'partial', 'no_data')`

// checkRuns: no run left running; every run that stored evidence stored exactly what its report
// says, once, with one audit row; no evidence without an observation, none observed by an
// unfinished run, none duplicated; failed runs carry their error. knownRunning names runs that a
// known, reported bug leaves running (see TestRevokeWhileSyncInFlight).
func (s *stack) checkRuns(o org, knownRunning ...string) {
	s.t.Helper()
	var running []string
	for _, k := range s.runningRuns(o) {
		if !slices.Contains(knownRunning, k) {
			running = append(running, k)
		}
	}
	if len(running) > 0 {
		s.t.Errorf("connector runs still running: %v", running)
	}
	ctx := context.Background()
	rows, err := s.db.Query(ctx, `
		SELECT r.idempotency_key, r.finished_at IS NOT NULL, coalesce((r.report->>'observed')::int, -1),
		       (SELECT count(*) FROM evidence_observation_spans o WHERE o.last_run_id = r.id),
		       (SELECT count(*) FROM audit_log a WHERE a.org_id = r.org_id AND a.action = 'connection.sync'
		            AND a.metadata->>'run_id' = r.id::text)
		FROM connector_runs r
		WHERE r.org_id = $1 AND r.kind = 'sync' AND r.outcome IN `+finishedOutcomes+`
		  -- a run's observations stay on the spans it was the last to extend: check each
		  -- connection's latest finished sync, whose every observation is still its own
		  AND r.finished_at = (SELECT max(x.finished_at) FROM connector_runs x WHERE x.connection_id = r.connection_id
		                       AND x.kind = 'sync' AND x.outcome IN `+finishedOutcomes+`)`, o.id)
	if err != nil {
		s.t.Fatal(err)
	}
	finished := 0
	for rows.Next() {
		var key string
		var hasFinish bool
		var reported, observed, audited int
		if err := rows.Scan(&key, &hasFinish, &reported, &observed, &audited); err != nil {
			s.t.Fatal(err)
		}
		finished++
		if !hasFinish || reported != observed {
			s.t.Errorf("run %s: finished_at set %v, report says %d observations, %d stored (half-written?)", key, hasFinish, reported, observed)
		}
		if audited != 1 {
			s.t.Errorf("run %s has %d connection.sync audit rows, want exactly 1", key, audited)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	if finished == 0 {
		s.t.Error("no finished sync run at all: the test proved nothing")
	}
	for what, q := range map[string]string{
		"observations by unfinished runs": `SELECT count(*) FROM evidence_observation_spans ob JOIN connector_runs r
			ON r.id = ob.last_run_id OR r.id = ob.first_run_id
			WHERE ob.org_id = $1 AND r.outcome NOT IN ` + finishedOutcomes,
		"evidence rows without an observation": `SELECT count(*) FROM evidence e WHERE e.org_id = $1
			AND NOT EXISTS (SELECT 1 FROM evidence_observation_spans ob WHERE ob.evidence_id = e.id)`,
		"duplicated evidence contents": `SELECT count(*) FROM (SELECT 1 FROM evidence WHERE org_id = $1
			GROUP BY connection_id, type, subject, payload HAVING count(*) > 1) d`,
		"failed runs without their error": `SELECT count(*) FROM connector_runs WHERE org_id = $1 AND outcome = 'failed'
			AND (error IS NULL OR error_kind IS NULL)`,
	} {
		if n := s.count(q, o.id); n != 0 {
			s.t.Errorf("%s: %d", what, n)
		}
	}
	// The runs' reports account for every evidence row: a retried attempt that stored evidence
	// again, or a lost one, shows up as a difference.
	rows, err = s.db.Query(ctx, `
		SELECT c.id, (SELECT count(*) FROM evidence e WHERE e.connection_id = c.id),
		       (SELECT coalesce(sum((r.report->>'new_evidence')::int), 0) FROM connector_runs r
		        WHERE r.connection_id = c.id AND r.kind = 'sync' AND r.outcome IN `+finishedOutcomes+`)
		FROM connections c WHERE c.org_id = $1`, o.id)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var stored, reported int
		if err := rows.Scan(&id, &stored, &reported); err != nil {
			s.t.Fatal(err)
		}
		if stored != reported {
			s.t.Errorf("connection %s: %d evidence rows, the runs report %d new", id, stored, reported)
		}
	}
}

// checkStaticEvidence: connections whose site did not change during the test hold exactly one
// project inventory and one ticket volume row each, however many syncs, retries and crashes
// they went through (those payloads are counts, so they only change when the site does).
func (s *stack) checkStaticEvidence(conns []connection) {
	s.t.Helper()
	for _, c := range conns {
		for _, typ := range []string{"jira.project_inventory", "jira.ticket_volume"} {
			if n := s.count(`SELECT count(*) FROM evidence WHERE connection_id = $1 AND type = $2`, c.id, typ); n != 1 {
				s.t.Errorf("connection %s has %d %s evidence rows, want 1 (the site did not change)", c.id, n, typ)
			}
		}
		if n := s.count(`SELECT count(*) FROM connector_runs WHERE connection_id = $1 AND kind = 'sync' AND outcome = 'success'`, c.id); n < 1 {
			s.t.Errorf("connection %s has no successful sync", c.id)
		}
	}
}

// findingStatusInJira is the Jira status a finding's issue must end in (the default mapping).
var findingStatusInJira = map[string]string{"open": "To Do", "triaged": "In Progress", "resolved": "Done"}

// checkFindingIssues: nothing left queued or half-created, every finding linked to exactly one
// issue carrying its marker, no issue without a finding, and each issue in its finding's status.
// sim must be used by c only.
func (s *stack) checkFindingIssues(o org, c connection, ids []uuid.UUID) {
	s.t.Helper()
	ctx := context.Background()
	if n := s.count(`SELECT count(*) FROM finding_sync_queue WHERE connection_id = $1`, c.id); n != 0 {
		s.t.Errorf("%d items still queued", n)
	}
	if n := s.count(`SELECT count(*) FROM finding_issue_links WHERE connection_id = $1 AND state <> 'linked'`, c.id); n != 0 {
		s.t.Errorf("%d links not linked (half-created)", n)
	}
	marked := c.sim.markedIssues()
	want := map[string]bool{}
	for _, id := range ids {
		marker := findings.IssueMarker(findings.Scope{OrgID: o.id, ConnectionID: c.id}, id)
		want[marker] = true
		var status, issueKey string
		err := s.db.QueryRow(ctx, `SELECT f.status, coalesce(l.issue_key, '') FROM findings f
			JOIN finding_issue_links l ON l.finding_id = f.id AND l.connection_id = $2 WHERE f.id = $1`, id, c.id).Scan(&status, &issueKey)
		if err != nil {
			s.t.Errorf("finding %s: no link (%v)", id, err)
			continue
		}
		issues := marked[marker]
		if len(issues) != 1 {
			keys := make([]string, 0, len(issues))
			for _, is := range issues {
				keys = append(keys, is.Key)
			}
			s.t.Errorf("finding %s has %d issues %v, want exactly 1", id, len(issues), keys)
			continue
		}
		if issues[0].Key != issueKey {
			s.t.Errorf("finding %s is linked to %s but its issue is %s", id, issueKey, issues[0].Key)
		}
		if n := s.count(`SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'finding.issue_created' AND target_id = $2
			AND metadata->>'connection_id' = $3 AND metadata->>'issue_key' = $4`, o.id, id.String(), c.id.String(), issueKey); n != 1 {
			s.t.Errorf("finding %s: %d finding.issue_created audit rows for %s, want exactly 1", id, n, issueKey)
		}
		if wantStatus := findingStatusInJira[status]; issues[0].Status != wantStatus {
			s.t.Errorf("finding %s is %s but issue %s is %s (want %s)", id, status, issueKey, issues[0].Status, wantStatus)
		}
	}
	for marker, issues := range marked {
		if !want[marker] {
			s.t.Errorf("issue %s carries marker %s of no finding", issues[0].Key, marker)
		}
	}
}

// panicRE finds a panic in a log line's text (see logText): Go's own "panic:" and goroutine
// dumps, jiraconnect's "panic in handler", the Temporal SDK's workflow/activity panics and the
// server's "Panic is captured". The word boundary keeps random ids from matching.
var panicRE = regexp.MustCompile(`(?i)\bpanic`)

// logText is what a log line says, without stack-trace fields (the Temporal server attaches stack
// traces that name functions like capturePanicHandler to ordinary warnings) or random ids.
func logText(line string) string {
	var m map[string]any
	if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &m) == nil {
		delete(m, "stacktrace")
		delete(m, "logging-call-at")
		delete(m, "request_id")
		b, _ := json.Marshal(m)
		return string(b)
	}
	return line
}

// checkLogs: no process panicked, and no credential appears in the logs of the API, the worker or
// the Temporal server (the simulator prints its own demo credentials by design and is skipped).
func (s *stack) checkLogs() {
	s.t.Helper()
	s.mu.Lock()
	secrets := append([]string(nil), s.secrets...)
	s.mu.Unlock()
	if len(secrets) == 0 {
		s.t.Error("no secrets registered: the secret scan would prove nothing")
	}
	for _, p := range s.procs {
		log := p.log()
		if log == "" {
			s.t.Errorf("%s wrote no log", p.name)
		}
		for i, line := range strings.Split(log, "\n") {
			if panicRE.MatchString(line) && panicRE.MatchString(logText(line)) {
				s.t.Errorf("%s log line %d mentions a panic: %.400s", p.name, i+1, line)
			}
		}
		if p.name != "api" && p.name != "worker" && p.name != "temporal" {
			continue
		}
		for _, sec := range secrets {
			if strings.Contains(log, sec) {
				s.t.Errorf("%s log contains a credential (%d characters, starting %.4s…)", p.name, len(sec), sec)
			}
		}
	}
}

// checkHistories: no credential in any payload of any workflow history.
func (s *stack) checkHistories() {
	s.t.Helper()
	ctx := context.Background()
	s.mu.Lock()
	secrets := append([]string(nil), s.secrets...)
	s.mu.Unlock()
	var token []byte
	scanned := 0
	for {
		list, err := s.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{NextPageToken: token})
		if err != nil {
			s.t.Fatal(err)
		}
		for _, ex := range list.GetExecutions() {
			it := s.tc.GetWorkflowHistory(ctx, ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for it.HasNext() {
				ev, err := it.Next()
				if err != nil {
					s.t.Fatal(err)
				}
				raw := ev.String()
				for _, sec := range secrets {
					if strings.Contains(raw, sec) {
						s.t.Errorf("workflow %s event %d contains a credential", ex.GetExecution().GetWorkflowId(), ev.GetEventId())
					}
				}
			}
			scanned++
		}
		token = list.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	if scanned == 0 {
		s.t.Error("no workflow histories to scan")
	}
}

// checkAll runs the checks every test ends with.
func (s *stack) checkAll(o org, knownRunning ...string) {
	s.t.Helper()
	s.checkRuns(o, knownRunning...)
	s.checkLogs()
	s.checkHistories()
}
