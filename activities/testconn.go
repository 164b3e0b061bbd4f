package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/sqlc-dev/pqtype"
	"go.temporal.io/sdk/activity"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/jira"
)

// Names of the connection test's checks, in the order they run.
const (
	CheckCredentials       = "credentials"
	CheckMyself            = "myself"
	CheckProjectVisibility = "project_visibility"
	CheckSearchPermission  = "search_permission"
	CheckResolvedJQL       = "resolved_jql"
)

// TestConnection checks a connection step by step and reports each step: the stored credentials
// can be opened, Jira accepts them (who am I), the account sees projects, may search with JQL,
// and the configured resolved-ticket JQL is valid. A failing check is part of the result, not an
// error; the activity fails only when our own infrastructure does (Postgres, KMS) or it is
// cancelled. When the credentials are unusable the later checks are reported as skipped, since
// they could only fail the same way.
//
// The test is recorded as a connector run of kind "test" (outcome success or failed, the Jira call
// count, the checks in the run report). A retried attempt after a successful test was recorded
// answers from the recorded run; after a recorded failure it tests again (the run is reopened),
// since the retry may be exactly what the user is waiting for.
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
	checks, err := a.runChecks(ctx, ref, stats)
	if err != nil {
		f := classify(err)
		a.recordAttemptError(ctx, run.ID, ref.OrgID, f, stats.Total())
		return TestResult{}, activityError(ctx, err)
	}
	res := resultOf(checks.checks)
	outcome, errText, errKind := OutcomeSuccess, (*string)(nil), (*string)(nil)
	if !res.OK {
		outcome = OutcomeFailed
		for _, c := range checks.checks {
			if !c.OK {
				errText = ptr(truncate(c.Name+": "+c.Detail, maxErrorText))
				break
			}
		}
		kind := "check_failed"
		if checks.firstErr != nil {
			kind = classify(checks.firstErr).errType
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

// runChecks performs the checks. It fails only for infrastructure failures and cancellation.
func (a *Activities) runChecks(ctx context.Context, ref ConnectionRef, stats *jira.CallStats) (checkRun, error) {
	var r checkRun
	failed := false
	fail := func(name string, err error, detail string) {
		if !failed {
			failed, r.firstErr = true, err
		}
		r.checks = append(r.checks, Check{Name: name, OK: false, Detail: detail})
	}
	pass := func(name, detail string) { r.checks = append(r.checks, Check{Name: name, OK: true, Detail: detail}) }
	skipRest := func(after string, names ...string) {
		for _, n := range names {
			r.checks = append(r.checks, Check{Name: n, OK: false, Detail: "skipped: the " + after + " check failed"})
		}
	}

	heartbeat(ctx, CheckCredentials)
	client, conn, err := a.conns.Client(ctx, ref.OrgID, ref.ConnectionID, stats)
	if err != nil {
		if conn.Kind == connections.KindCloudOAuth && a.conns.OAuth == nil {
			err = errOAuthNotConfigured
		}
		if f := classify(err); f.errType == ErrTypeTransient {
			return checkRun{}, err // database, KMS or cancellation: not a property of the connection
		}
		fail(CheckCredentials, err, credentialsDetail(err))
		skipRest(CheckCredentials, CheckMyself, CheckProjectVisibility, CheckSearchPermission, CheckResolvedJQL)
		return r, nil
	}
	pass(CheckCredentials, "stored "+string(conn.Kind)+" credentials opened")

	call := func(step string, fn func(ctx context.Context) error) error {
		heartbeat(ctx, step)
		if err := ctx.Err(); err != nil {
			return err
		}
		callCtx, cancel := context.WithTimeout(ctx, a.callTimeout)
		defer cancel()
		return fn(callCtx)
	}
	// cancelled reports a failure that is the activity's own cancellation, not the connection's.
	cancelled := func(err error) bool { return ctx.Err() != nil && errors.Is(err, ctx.Err()) }

	var me jira.User
	if err := call(CheckMyself, func(ctx context.Context) (err error) { me, err = client.Myself(ctx); return err }); err != nil {
		if cancelled(err) {
			return checkRun{}, err
		}
		fail(CheckMyself, err, jiraDetail(err))
		if t := classify(err).errType; t == ErrTypeReauthRequired || t == ErrTypeRevoked {
			skipRest(CheckMyself, CheckProjectVisibility, CheckSearchPermission, CheckResolvedJQL)
			return r, nil
		}
	} else {
		who := me.DisplayName
		if who == "" {
			who = me.Name
		}
		pass(CheckMyself, "authenticated as "+who)
	}

	var projects int
	if err := call(CheckProjectVisibility, func(ctx context.Context) (err error) { projects, err = client.ProjectCount(ctx); return err }); err != nil {
		if cancelled(err) {
			return checkRun{}, err
		}
		fail(CheckProjectVisibility, err, jiraDetail(err))
	} else if projects == 0 {
		fail(CheckProjectVisibility, nil, "no project is visible to this account: grant it the Browse Projects permission")
	} else {
		pass(CheckProjectVisibility, fmt.Sprintf("%d projects visible", projects))
	}

	totalJQL, err := totalQuery.Build()
	if err != nil {
		return checkRun{}, fmt.Errorf("build total JQL: %w", err)
	}
	var total int
	if err := call(CheckSearchPermission, func(ctx context.Context) (err error) { total, err = client.ApproximateCount(ctx, totalJQL); return err }); err != nil {
		if cancelled(err) {
			return checkRun{}, err
		}
		fail(CheckSearchPermission, err, jiraDetail(err))
	} else {
		pass(CheckSearchPermission, fmt.Sprintf("JQL search works (about %d issues visible)", total))
	}

	var page *jira.SearchPage
	if err := call(CheckResolvedJQL, func(ctx context.Context) (err error) {
		page, err = client.Search(ctx, jira.SearchRequest{JQL: conn.Config.ResolvedJQL, Fields: []string{"key"}, MaxResults: 1})
		return err
	}); err != nil {
		if cancelled(err) {
			return checkRun{}, err
		}
		fail(CheckResolvedJQL, err, jiraDetail(err))
	} else if len(page.Issues) == 0 {
		pass(CheckResolvedJQL, "the resolved-ticket JQL is valid but matches no ticket now: syncs will record an empty sample (no data)")
	} else {
		pass(CheckResolvedJQL, "the resolved-ticket JQL is valid and matches tickets")
	}
	return r, nil
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
	case errors.Is(err, errOAuthNotConfigured):
		return errOAuthNotConfigured.Error()
	case classify(err).errType == ErrTypeReauthRequired:
		return "the stored credentials cannot be opened: re-authorize the connection"
	}
	return "the stored credentials cannot be used: " + truncate(err.Error(), 500)
}

// jiraDetail is a failed Jira call as a check detail: what to do about it, then Jira's answer.
func jiraDetail(err error) string {
	var hint string
	switch classify(err).errType {
	case ErrTypeReauthRequired:
		hint = "Jira rejected the credentials: re-authorize the connection"
	case ErrTypeConfig:
		hint = "Jira refused the request (permissions, scopes or configuration)"
	case ErrTypeRateLimited:
		hint = "Jira is rate limiting this account; try again later"
	default:
		hint = "Jira could not be reached or answered with an error; try again later"
	}
	return hint + ": " + truncate(err.Error(), 500)
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
