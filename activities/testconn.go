package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/sqlc-dev/pqtype"
	"go.temporal.io/sdk/activity"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/adf"
	"github.com/jiraconnect/jiraconnect/jira/jql"
)

// Names of the connection test's checks, in the order they run. The finding_* checks run only
// for a connection with finding sync on.
const (
	CheckCredentials       = "credentials"
	CheckMyself            = "myself"
	CheckProjectVisibility = "project_visibility"
	CheckSearchPermission  = "search_permission"
	CheckResolvedJQL       = "resolved_jql"

	CheckFindingProject        = "finding_project"
	CheckFindingIssueType      = "finding_issue_type"
	CheckFindingFields         = "finding_fields"
	CheckFindingTransitions    = "finding_transitions"
	CheckFindingTestIssue      = "finding_test_issue"
	CheckFindingTestTransition = "finding_test_transition"
)

// The synthetic issue of a finding-sync connection test. It carries TestIssueLabel and a label
// naming the test run (TestIssueLabel + "-" + run id), never a finding marker (jc-…), so neither
// the exactly-once marker search nor inbound sync (which only reads linked issues) can take it for
// a finding's issue.
const (
	TestIssueLabel   = "jiraconnect-test"
	TestIssueSummary = "[jiraconnect] connection test — safe to delete"
)

// TestConnection checks a connection step by step and reports each step: the stored credentials
// can be opened, Jira accepts them (who am I), the account sees projects, may search with JQL,
// and the configured resolved-ticket JQL is valid. A failing check is part of the result, not an
// error; the activity fails only when our own infrastructure does (Postgres, KMS) or it is
// cancelled. When the credentials are unusable the later checks are reported as skipped, since
// they could only fail the same way.
//
// With finding sync on, six more checks follow, in this order:
//
//   - finding_project: the target project exists and is visible (GET project/{key}/statuses,
//     which needs only Browse Projects and also yields the statuses step 4 checks).
//   - finding_issue_type: the issue type can be created in the project (createmeta).
//   - finding_fields: the mapped custom fields (framework-reference multi-select, finding-id text
//     field) are on the create screen and of a usable kind, and every required field without a
//     default is one the connector fills (jira.Client.ValidateCreateConfig, as the API does when
//     the configuration is saved; its problem codes, e.g. customfield_unknown, are in the detail).
//   - finding_transitions: every status of the status map exists in the workflow of that issue
//     type, by id or name, or — when the name does not exist — as the only status of its category
//     (a category fallback with several candidates, or two finding statuses landing on one Jira
//     status, would make sync ambiguous and fails). This is existence in the workflow; reaching the
//     done status is what the last check proves on a real issue.
//   - finding_test_issue: a synthetic issue is created (TestIssueSummary, labels TestIssueLabel
//     and TestIssueLabel-<run id>, no finding marker; mapped custom fields are filled only when the
//     create screen requires them). Creating an issue in someone's Jira is a visible side effect,
//     so it happens only when every earlier finding check passed.
//   - finding_test_transition: the synthetic issue is moved to the status resolved findings map to
//     (the Done mapping) with jira.Client.MoveTo, through intermediate statuses when the workflow
//     needs them; the detail names the issue key.
//
// A finding check that an earlier one makes pointless (no project, no issue type, no test issue)
// is reported as skipped. finding_transitions does not depend on finding_fields, so both are
// reported even when the fields are wrong.
//
// The test is recorded as a connector run of kind "test" (outcome success or failed, the Jira call
// count, the checks in the run report). A retried attempt after a successful test was recorded
// answers from the recorded run; after a recorded failure it tests again (the run is reopened),
// since the retry may be exactly what the user is waiting for. A retry of the same run does not
// create a second synthetic issue: before creating, the test searches the project for the run's
// label and reuses the issue it finds. Jira Cloud's search is eventually consistent, so a retry
// within seconds of a create whose response was lost may not see that issue yet and create another
// (both carry the run's label and are safe to delete); the simulator's search is consistent.
func (a *Activities) TestConnection(ctx context.Context, ref ConnectionRef) (TestResult, error) {
	if err := validRef(ref); err != nil {
		return TestResult{}, activityError(ctx, err)
	}
	key, workflowID, runID := testRunKey(ctx)
	run, err := a.startRun(ctx, ref, RunKindTest, key, workflowID, runID, RunKindTest)
	if err != nil {
		return TestResult{}, activityError(ctx, err)
	}
	if run.Outcome != "running" {
		var rep runReport
		if run.Report.Valid && json.Unmarshal(run.Report.RawMessage, &rep) == nil && len(rep.Checks) > 0 {
			return resultOf(rep.Checks), nil
		}
	}
	stats := &jira.CallStats{}
	checks, err := a.runChecks(ctx, ref, run.ID, stats)
	if err != nil {
		f := failure.Classify(err)
		a.recordAttemptError(ctx, run.ID, ref.OrgID, f, stats.Total())
		return TestResult{}, activityError(ctx, err)
	}
	res := resultOf(checks.checks)
	outcome, errText, errKind := OutcomeSuccess, (*string)(nil), (*string)(nil)
	if !res.OK {
		outcome = OutcomeFailed
		for _, c := range checks.checks {
			if !c.OK {
				errText = ptr(failure.Truncate(c.Name+": "+c.Detail, failure.MaxText))
				break
			}
		}
		kind := "check_failed"
		if checks.firstErr != nil {
			kind = failure.Classify(checks.firstErr).Type
		}
		errKind = &kind
	}
	reportJSON, err := json.Marshal(runReport{Outcome: outcome, Checks: checks.checks, CallsByOperation: stats.ByOp()})
	if err != nil {
		return TestResult{}, activityError(ctx, fmt.Errorf("encode test report: %w", err))
	}
	now := a.now().UTC()
	err = a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
		_, err := q.FinishConnectorRun(ctx, dbq.FinishConnectorRunParams{
			ID: run.ID, Outcome: outcome, FinishedAt: &now, Error: errText, ErrorKind: errKind,
			JiraCalls: int32(stats.Total()), Report: pqtype.NullRawMessage{RawMessage: reportJSON, Valid: true},
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // finished by a concurrent attempt; this attempt's answer is as good
		}
		return err
	})
	if err != nil {
		return TestResult{}, activityError(ctx, fmt.Errorf("record connection test: %w", err))
	}
	a.logger(ref).Info("connection tested", slog.Bool("ok", res.OK), slog.String("run_id", run.ID.String()),
		slog.Int("jira_calls", stats.Total()))
	return res, nil
}

// checkRun is the outcome of the checks: each check, and the error of the first failed check (for
// the run's error kind; nil when that check failed without an error, e.g. zero projects).
type checkRun struct {
	checks   []Check
	firstErr error
}

// checker collects the checks of one test.
type checker struct {
	callTimeout time.Duration
	r           checkRun
	failed      bool
}

func (k *checker) fail(name string, err error, detail string) {
	if !k.failed {
		k.failed, k.r.firstErr = true, err
	}
	k.r.checks = append(k.r.checks, Check{Name: name, OK: false, Detail: detail})
}

func (k *checker) pass(name, detail string) {
	k.r.checks = append(k.r.checks, Check{Name: name, OK: true, Detail: detail})
}

// skip reports names as skipped because the check after failed.
func (k *checker) skip(after string, names ...string) {
	for _, n := range names {
		k.r.checks = append(k.r.checks, Check{Name: n, OK: false, Detail: "skipped: the " + after + " check failed"})
	}
}

// call heartbeats step and runs fn with the per-call timeout.
func (k *checker) call(ctx context.Context, step string, fn func(ctx context.Context) error) error {
	heartbeat(ctx, step)
	if err := ctx.Err(); err != nil {
		return err
	}
	callCtx, cancel := context.WithTimeout(ctx, k.callTimeout)
	defer cancel()
	return fn(callCtx)
}

// ownCancellation reports a failure that is the activity's own cancellation, not the connection's.
func ownCancellation(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, ctx.Err())
}

// findingCheckNames are the finding-sync checks a connection's test includes (none without
// finding sync).
func findingCheckNames(conn connections.Connection) []string {
	if conn.Config.FindingSync == nil {
		return nil
	}
	return []string{CheckFindingProject, CheckFindingIssueType, CheckFindingFields, CheckFindingTransitions,
		CheckFindingTestIssue, CheckFindingTestTransition}
}

// runChecks performs the checks. It fails only for infrastructure failures and cancellation.
func (a *Activities) runChecks(ctx context.Context, ref ConnectionRef, runID uuid.UUID, stats *jira.CallStats) (checkRun, error) {
	k := &checker{callTimeout: a.callTimeout}

	heartbeat(ctx, CheckCredentials)
	client, conn, err := a.conns.Client(ctx, ref.OrgID, ref.ConnectionID, stats)
	if err != nil {
		if conn.Kind == connections.KindCloudOAuth && a.conns.OAuth == nil {
			err = failure.ErrOAuthNotConfigured
		}
		if f := failure.Classify(err); f.Type == failure.TypeTransient {
			return checkRun{}, err // database, KMS or cancellation: not a property of the connection
		}
		k.fail(CheckCredentials, err, credentialsDetail(err))
		k.skip(CheckCredentials, append([]string{CheckMyself, CheckProjectVisibility, CheckSearchPermission, CheckResolvedJQL}, findingCheckNames(conn)...)...)
		return k.r, nil
	}
	k.pass(CheckCredentials, "stored "+string(conn.Kind)+" credentials opened")

	var me jira.User
	if err := k.call(ctx, CheckMyself, func(ctx context.Context) (err error) { me, err = client.Myself(ctx); return err }); err != nil {
		if ownCancellation(ctx, err) {
			return checkRun{}, err
		}
		k.fail(CheckMyself, err, jiraDetail(err))
		if t := failure.Classify(err).Type; t == failure.TypeReauthRequired || t == failure.TypeRevoked {
			k.skip(CheckMyself, append([]string{CheckProjectVisibility, CheckSearchPermission, CheckResolvedJQL}, findingCheckNames(conn)...)...)
			return k.r, nil
		}
	} else {
		who := me.DisplayName
		if who == "" {
			who = me.Name
		}
		k.pass(CheckMyself, "authenticated as "+who)
	}

	var projects int
	if err := k.call(ctx, CheckProjectVisibility, func(ctx context.Context) (err error) { projects, err = client.ProjectCount(ctx); return err }); err != nil {
		if ownCancellation(ctx, err) {
			return checkRun{}, err
		}
		k.fail(CheckProjectVisibility, err, jiraDetail(err))
	} else if projects == 0 {
		k.fail(CheckProjectVisibility, nil, "no project is visible to this account: grant it the Browse Projects permission")
	} else {
		k.pass(CheckProjectVisibility, fmt.Sprintf("%d projects visible", projects))
	}

	totalJQL, err := totalQuery.Build()
	if err != nil {
		return checkRun{}, fmt.Errorf("build total JQL: %w", err)
	}
	var total int
	if err := k.call(ctx, CheckSearchPermission, func(ctx context.Context) (err error) { total, err = client.ApproximateCount(ctx, totalJQL); return err }); err != nil {
		if ownCancellation(ctx, err) {
			return checkRun{}, err
		}
		k.fail(CheckSearchPermission, err, jiraDetail(err))
	} else {
		k.pass(CheckSearchPermission, fmt.Sprintf("JQL search works (about %d issues visible)", total))
	}

	var page *jira.SearchPage
	if err := k.call(ctx, CheckResolvedJQL, func(ctx context.Context) (err error) {
		page, err = client.Search(ctx, jira.SearchRequest{JQL: conn.Config.ResolvedJQL, Fields: []string{"key"}, MaxResults: 1})
		return err
	}); err != nil {
		if ownCancellation(ctx, err) {
			return checkRun{}, err
		}
		k.fail(CheckResolvedJQL, err, jiraDetail(err))
	} else if len(page.Issues) == 0 {
		k.pass(CheckResolvedJQL, "the resolved-ticket JQL is valid but matches no ticket now: syncs will record an empty sample (no data)")
	} else {
		k.pass(CheckResolvedJQL, "the resolved-ticket JQL is valid and matches tickets")
	}

	if conn.Config.FindingSync != nil {
		log := a.logger(ref).With(slog.String("run_id", runID.String()))
		if err := k.findingChecks(ctx, client, *conn.Config.FindingSync, runID, log); err != nil {
			return checkRun{}, err
		}
	}
	return k.r, nil
}

// findingChecks runs the finding-sync checks described on TestConnection. It returns an error only
// for the activity's own cancellation; Jira's answers are check results.
func (k *checker) findingChecks(ctx context.Context, client *jira.Client, cfg findings.SyncConfig, runID uuid.UUID, log *slog.Logger) error {
	project := cfg.ProjectKey
	if err := cfg.Validate(); err != nil {
		k.fail(CheckFindingProject, fmt.Errorf("%w: %v", failure.ErrBadConfig, err),
			"the stored finding-sync configuration is invalid ("+failure.Truncate(err.Error(), 500)+"): save it again with PUT /v1/connections/{id}/finding-sync")
		k.skip(CheckFindingProject, CheckFindingIssueType, CheckFindingFields, CheckFindingTransitions, CheckFindingTestIssue, CheckFindingTestTransition)
		return nil
	}

	// 1. The project, with the statuses of each issue type's workflow.
	var types []jira.IssueTypeStatuses
	if err := k.call(ctx, CheckFindingProject, func(ctx context.Context) (err error) { types, err = client.ProjectStatuses(ctx, project); return err }); err != nil {
		if ownCancellation(ctx, err) {
			return err
		}
		detail := jiraDetail(err)
		if jira.KindOf(err) == jira.KindNotFound {
			detail = fmt.Sprintf("project %s does not exist or is not visible to this account (it needs the Browse Projects permission in it): %s",
				project, failure.Truncate(err.Error(), 500))
		}
		k.fail(CheckFindingProject, err, detail)
		k.skip(CheckFindingProject, CheckFindingIssueType, CheckFindingFields, CheckFindingTransitions, CheckFindingTestIssue, CheckFindingTestTransition)
		return nil
	}
	k.pass(CheckFindingProject, fmt.Sprintf("project %s is visible (%d issue types)", project, len(types)))

	// 2 and 3. The create screen: issue type, mapped custom fields, required fields.
	var rep *jira.CreateConfigReport
	if err := k.call(ctx, CheckFindingIssueType, func(ctx context.Context) (err error) {
		rep, err = client.ValidateCreateConfig(ctx, cfg.CreateCheck())
		return err
	}); err != nil {
		if ownCancellation(ctx, err) {
			return err
		}
		k.fail(CheckFindingIssueType, err, "could not read the create screens of project "+project+": "+jiraDetail(err))
		k.skip(CheckFindingIssueType, CheckFindingFields, CheckFindingTransitions, CheckFindingTestIssue, CheckFindingTestTransition)
		return nil
	}
	for _, p := range rep.Problems {
		if p.Code == jira.ProblemIssueTypeNotFound {
			k.fail(CheckFindingIssueType, rep.Err(), string(p.Code)+": "+p.Message)
			k.skip(CheckFindingIssueType, CheckFindingFields, CheckFindingTransitions, CheckFindingTestIssue, CheckFindingTestTransition)
			return nil
		}
	}
	it := rep.IssueType
	k.pass(CheckFindingIssueType, fmt.Sprintf("issue type %s (%s) can be created in project %s", it.Name, it.ID, project))

	firstFailed := ""
	if problems := fieldProblems(rep); len(problems) > 0 {
		k.fail(CheckFindingFields, fieldsError(rep), strings.Join(problems, "; "))
		firstFailed = CheckFindingFields
	} else {
		k.pass(CheckFindingFields, fieldsDetail(cfg, rep))
	}

	// 4. The status map against the issue type's workflow.
	if detail, ok := statusMapDetail(cfg, types, it, project); ok {
		k.pass(CheckFindingTransitions, detail)
	} else {
		k.fail(CheckFindingTransitions, nil, detail)
		if firstFailed == "" {
			firstFailed = CheckFindingTransitions
		}
	}
	if firstFailed != "" {
		k.skip(firstFailed, CheckFindingTestIssue, CheckFindingTestTransition)
		return nil
	}

	// 5. The synthetic issue: the one an earlier attempt of this run created, or a new one.
	runLabel := TestIssueLabel + "-" + runID.String()
	var issueKey string
	created := false
	if err := k.call(ctx, CheckFindingTestIssue, func(ctx context.Context) error {
		found, err := findTestIssue(ctx, client, project, runLabel)
		if err != nil || found != "" {
			issueKey = found
			return err
		}
		in := testIssueInput(cfg, rep, runLabel)
		c, err := client.CreateIssue(ctx, in)
		if err != nil {
			return err
		}
		issueKey, created = c.Key, true
		return nil
	}); err != nil {
		if ownCancellation(ctx, err) {
			return err
		}
		k.fail(CheckFindingTestIssue, err, "could not create a test issue in project "+project+": "+jiraDetail(err))
		k.skip(CheckFindingTestIssue, CheckFindingTestTransition)
		return nil
	}
	if created {
		log.Info("connection test created a test issue", slog.String("issue_key", issueKey))
		k.pass(CheckFindingTestIssue, fmt.Sprintf("created test issue %s (labels %s, %s); it is not a finding and is safe to delete",
			issueKey, TestIssueLabel, runLabel))
	} else {
		k.pass(CheckFindingTestIssue, fmt.Sprintf("test issue %s, created by an earlier attempt of this test, exists (label %s); it is safe to delete",
			issueKey, runLabel))
	}
	k.r.checks[len(k.r.checks)-1].IssueKey = issueKey

	// 6. Move it to the status resolved findings map to. MoveTo may take several calls (a
	// multi-hop walk); they share one call timeout, which keeps the heartbeat timeout honest.
	target := findings.OutboundTarget(cfg, findings.StatusResolved)
	var moved *jira.TransitionResult
	if err := k.call(ctx, CheckFindingTestTransition, func(ctx context.Context) (err error) {
		moved, err = client.MoveTo(ctx, issueKey, target, 0)
		return err
	}); err != nil {
		if ownCancellation(ctx, err) {
			return err
		}
		k.fail(CheckFindingTestTransition, err, fmt.Sprintf("could not move test issue %s to %s (the status resolved findings map to): %s",
			issueKey, target, jiraDetail(err)))
		return nil
	}
	if moved.Changed {
		k.pass(CheckFindingTestTransition, fmt.Sprintf("moved test issue %s from %s to %s, the status resolved findings map to", issueKey,
			strconv.Quote(moved.From.Name), strconv.Quote(moved.To.Name)))
	} else {
		k.pass(CheckFindingTestTransition, fmt.Sprintf("test issue %s is already in %s, the status resolved findings map to", issueKey,
			strconv.Quote(moved.To.Name)))
	}
	return nil
}

// fieldProblems lists what would make creating a finding's issue fail: the create-screen problems
// (each with its code), and a mapped field whose kind cannot take the value sync sends (a
// multi-select of framework references, a single-line text finding id). A field of a kind the
// client does not recognise is given the benefit of the doubt.
func fieldProblems(rep *jira.CreateConfigReport) []string {
	var out []string
	for _, p := range rep.Problems {
		out = append(out, string(p.Code)+": "+p.Message)
	}
	wrong := func(role, want string, ok func(jira.FieldKind) bool) {
		f, found := rep.Fields[role]
		if !found || f.Kind() == jira.FieldKindOther || ok(f.Kind()) {
			return
		}
		out = append(out, fmt.Sprintf("%s: custom field %s (%s) is a %s field; %s needs %s", fieldKindProblem, f.FieldID, role, f.Kind(), role, want))
	}
	wrong(findings.RoleFrameworkRefs, "a multi-select (or checkboxes) field", func(k jira.FieldKind) bool { return k == jira.FieldKindMultiSelect })
	wrong(findings.RoleFindingID, "a single-line text field", func(k jira.FieldKind) bool { return k == jira.FieldKindText })
	return out
}

// fieldKindProblem names a mapped field of the wrong kind in finding_fields details.
const fieldKindProblem = "customfield_wrong_kind"

// fieldsError is the error of a failed finding_fields check, for the run's error kind.
func fieldsError(rep *jira.CreateConfigReport) error {
	if err := rep.Err(); err != nil {
		return err
	}
	return &jira.Error{Kind: jira.KindConfig, Op: "createmeta.validate", Detail: "a mapped custom field is of the wrong kind"}
}

// fieldsDetail describes a passed finding_fields check.
func fieldsDetail(cfg findings.SyncConfig, rep *jira.CreateConfigReport) string {
	var mapped []string
	for _, r := range []struct{ role, id string }{{findings.RoleFrameworkRefs, cfg.FrameworkField}, {findings.RoleFindingID, cfg.FindingIDField}} {
		if r.id == "" {
			continue
		}
		f := rep.Fields[r.role]
		mapped = append(mapped, fmt.Sprintf("%s → %s (%s)", r.role, r.id, f.Kind()))
	}
	if len(mapped) == 0 {
		return "no custom field is mapped; every required field of the create screen is filled by the connector"
	}
	return "mapped custom fields are on the create screen (" + strings.Join(mapped, ", ") + ") and every required field is filled by the connector"
}

// statusMapDetail checks that every finding status maps to exactly one status of the issue type's
// workflow, the way jira.Client.TransitionTo matches a target (id, then name, then category), and
// describes the result.
func statusMapDetail(cfg findings.SyncConfig, types []jira.IssueTypeStatuses, it jira.IssueType, project string) (string, bool) {
	var statuses []jira.Status
	listed := false
	for _, t := range types {
		if t.IssueType.ID == it.ID {
			statuses, listed = t.Statuses, true
			break
		}
	}
	where := fmt.Sprintf("the workflow of %s in project %s", it.Name, project)
	if !listed || len(statuses) == 0 {
		return fmt.Sprintf("Jira lists no statuses for %s", where), false
	}
	names := make([]string, len(statuses))
	for i, s := range statuses {
		names[i] = strconv.Quote(s.Name)
	}
	var mapped, problems []string
	landing := map[string]findings.Status{}
	for _, fs := range findings.Statuses() {
		t, ok := cfg.StatusMap[fs]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s has no Jira status in the status map", fs))
			continue
		}
		s, note, problem := resolveTarget(t, statuses)
		if problem != "" {
			problems = append(problems, fmt.Sprintf("%s: %s", fs, problem))
			continue
		}
		at := s.ID
		if at == "" {
			at = "name:" + strings.ToLower(s.Name)
		}
		if prev, dup := landing[at]; dup {
			problems = append(problems, fmt.Sprintf("%s and %s would both land in %s, so changes made in Jira could not be told apart", prev, fs, strconv.Quote(s.Name)))
			continue
		}
		landing[at] = fs
		mapped = append(mapped, fmt.Sprintf("%s → %s%s", fs, strconv.Quote(s.Name), note))
	}
	if len(problems) > 0 {
		return fmt.Sprintf("the status map does not fit %s (statuses: %s): %s", where, strings.Join(names, ", "), strings.Join(problems, "; ")), false
	}
	return fmt.Sprintf("every mapped status exists in %s: %s", where, strings.Join(mapped, ", ")), true
}

// resolveTarget finds the workflow status a status-map entry lands in: by id, then by name, then
// as the only status of its category.
func resolveTarget(t findings.StatusTarget, statuses []jira.Status) (jira.Status, string, string) {
	if t.ID != "" {
		for _, s := range statuses {
			if s.ID == t.ID {
				return s, "", ""
			}
		}
	}
	for _, s := range statuses {
		if strings.EqualFold(s.Name, t.Name) {
			return s, "", ""
		}
	}
	var inCat []jira.Status
	var catNames []string
	for _, s := range statuses {
		if strings.EqualFold(s.Category.Key, t.CategoryKey) {
			inCat = append(inCat, s)
			catNames = append(catNames, strconv.Quote(s.Name))
		}
	}
	switch len(inCat) {
	case 0:
		return jira.Status{}, "", fmt.Sprintf("no status is named %s and none is of category %s", strconv.Quote(t.Name), t.CategoryKey)
	case 1:
		return inCat[0], fmt.Sprintf(" (no status is named %s; the only status of category %s)", strconv.Quote(t.Name), t.CategoryKey), ""
	}
	return jira.Status{}, "", fmt.Sprintf("no status is named %s and category %s has several (%s), so the issue would land in whichever the workflow offers first: name one of them",
		strconv.Quote(t.Name), t.CategoryKey, strings.Join(catNames, ", "))
}

// findTestIssue returns the key of the project's oldest issue carrying label, or "".
func findTestIssue(ctx context.Context, client *jira.Client, project, label string) (string, error) {
	q, err := jql.Query{Where: jql.And(jql.Eq("project", project), jql.Eq("labels", label)), OrderBy: []jql.Order{jql.Asc("created")}}.Build()
	if err != nil {
		return "", &jira.Error{Kind: jira.KindConfig, Op: "search", Detail: "test issue query: " + err.Error()}
	}
	page, err := client.Search(ctx, jira.SearchRequest{JQL: q, Fields: []string{"labels"}, MaxResults: 5})
	if err != nil {
		return "", err
	}
	for _, is := range page.Issues {
		// Jira's label match is exact; the check guards against a search that ignores it.
		if is.Key != "" && slices.Contains(is.Fields.Labels, label) {
			return is.Key, nil
		}
	}
	return "", nil
}

// testIssueInput is the synthetic issue: a summary and description that say what it is, the test
// labels and no finding marker, and the mapped custom fields only when the create screen requires
// them (the framework field with its first option, the finding-id field with a text that is not a
// finding id), so that the issue carries as little as possible.
func testIssueInput(cfg findings.SyncConfig, rep *jira.CreateConfigReport, runLabel string) jira.IssueInput {
	in := jira.IssueInput{
		Project: cfg.ProjectKey, IssueType: rep.IssueType.ID, Summary: TestIssueSummary,
		Description: adf.NewDoc(
			adf.Paragraph(adf.Text("Created by jiraconnect's connection test", adf.Strong()),
				adf.Text(" to prove that security findings can be created in this project and moved to their done status.")),
			adf.Paragraph(adf.Text("It is not a finding and nothing syncs it. It is safe to delete.")),
		),
		Labels: []string{TestIssueLabel, runLabel},
	}
	fields := map[string]jira.FieldValue{}
	if f, ok := rep.Fields[findings.RoleFrameworkRefs]; ok && f.Required && !f.HasDefaultValue && len(f.AllowedValues) > 0 {
		v := f.AllowedValues[0].Value
		if v == "" {
			v = f.AllowedValues[0].Name
		}
		fields[cfg.FrameworkField] = jira.MultiSelect(v)
	}
	if f, ok := rep.Fields[findings.RoleFindingID]; ok && f.Required && !f.HasDefaultValue {
		fields[cfg.FindingIDField] = jira.TextValue("connection test")
	}
	if len(fields) > 0 {
		in.CustomFields = fields
	}
	return in
}

func resultOf(checks []Check) TestResult {
	ok := len(checks) > 0
	for _, c := range checks {
		ok = ok && c.OK
	}
	return TestResult{OK: ok, Checks: checks}
}

// credentialsDetail explains why a connection's credentials cannot be used.
func credentialsDetail(err error) string {
	switch {
	case errors.Is(err, connections.ErrRevoked):
		return "the connection is revoked"
	case errors.Is(err, connections.ErrNotFound):
		return "the connection does not exist"
	case errors.Is(err, failure.ErrOAuthNotConfigured):
		return failure.ErrOAuthNotConfigured.Error()
	case failure.Classify(err).Type == failure.TypeReauthRequired:
		return "the stored credentials cannot be opened: re-authorize the connection"
	}
	return "the stored credentials cannot be used: " + failure.Truncate(err.Error(), 500)
}

// jiraDetail is a failed Jira call as a check detail: what to do about it, then Jira's answer.
func jiraDetail(err error) string {
	var hint string
	switch failure.Classify(err).Type {
	case failure.TypeReauthRequired:
		hint = "Jira rejected the credentials: re-authorize the connection"
	case failure.TypeConfig:
		hint = "Jira refused the request (permissions, scopes or configuration)"
	case failure.TypeRateLimited:
		hint = "Jira is rate limiting this account; try again later"
	default:
		hint = "Jira could not be reached or answered with an error; try again later"
	}
	return hint + ": " + failure.Truncate(err.Error(), 500)
}

// testRunKey names the run row of a connection test. Inside Temporal it is derived from the
// workflow run and the activity id, which a retry keeps; called directly (no workflow), every
// call is its own run.
func testRunKey(ctx context.Context) (key, workflowID, runID string) {
	if activity.IsActivity(ctx) {
		info := activity.GetInfo(ctx)
		workflowID, runID = info.WorkflowExecution.ID, info.WorkflowExecution.RunID
		return workflowID + "/test/" + runID + "/" + info.ActivityID, workflowID, runID
	}
	return "direct/test/" + uuid.NewString(), "", ""
}
