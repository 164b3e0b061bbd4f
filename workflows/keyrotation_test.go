package workflows

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

// quietSuite is a test suite whose SDK log shows only with -v.
func quietSuite() *testsuite.WorkflowTestSuite {
	var suite testsuite.WorkflowTestSuite
	level := slog.LevelError + 1
	if testing.Verbose() {
		level = slog.LevelWarn
	}
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))))
	return &suite
}

// The re-seal pages through the organization from the cursors its activities return, and while
// RetireOrgKeyVersions says the rotation is too young it sleeps on a durable timer for that long
// and runs another round (re-sealing what a process with a stale key cache wrote meanwhile)
// before retiring.
func TestOrgKeyResealWaitsForTheGraceThenRetires(t *testing.T) {
	env := quietSuite().NewTestWorkflowEnvironment()
	env.SetStartTime(t0)
	org, cursor := uuid.New(), uuid.New()
	var reseals []activities.ResealInput
	var resealedAt, retiredAt []time.Time
	env.OnActivity(acts.ResealOrgSecrets, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ResealInput) (activities.ResealResult, error) {
			reseals = append(reseals, in)
			resealedAt = append(resealedAt, env.Now())
			if in.After == uuid.Nil {
				return activities.ResealResult{Next: &cursor, Examined: 500, Resealed: 500}, nil
			}
			return activities.ResealResult{Examined: 3, Resealed: 2, Unreadable: 1}, nil
		})
	env.OnActivity(acts.RetireOrgKeyVersions, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RetireInput) (activities.RetireResult, error) {
			retiredAt = append(retiredAt, env.Now())
			if len(retiredAt) == 1 {
				return activities.RetireResult{WaitFor: 6 * time.Minute}, nil
			}
			return tenancy.RetireResult{Retired: []int32{1}, InUse: map[int32]int64{2: 1}}, nil
		})
	env.RegisterWorkflow(OrgKeyResealWorkflow)
	env.ExecuteWorkflow(OrgKeyResealWorkflow, OrgKeyResealInput{OrgID: org, Version: 3})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var out OrgKeyResealResult
	require.NoError(t, env.GetWorkflowResult(&out))

	assert.Equal(t, 2, out.Rounds)
	assert.Equal(t, []activities.ResealInput{{OrgID: org}, {OrgID: org, After: cursor}, {OrgID: org}, {OrgID: org, After: cursor}}, reseals)
	assert.Equal(t, 1004, out.Reseal.Resealed)
	assert.Equal(t, 2, out.Reseal.Unreadable)
	assert.Equal(t, []int32{1}, out.Retired)
	assert.Equal(t, map[int32]int64{2: 1}, out.InUse)
	require.Len(t, retiredAt, 2)
	assert.GreaterOrEqual(t, resealedAt[2].Sub(retiredAt[0]), 6*time.Minute, "the second round starts after the grace")
}

// A scheduled pass walks every page of RotateDueOrgKeys and starts a re-seal for each rotation
// it made and each unfinished re-seal, as children with ids derived from org and version.
func TestKeyRotationStartsResealsForRotationsAndUnfinishedOnes(t *testing.T) {
	env := quietSuite().NewTestWorkflowEnvironment()
	env.SetStartTime(t0)
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	var calls []activities.RotateDueInput
	env.OnActivity(acts.RotateDueOrgKeys, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RotateDueInput) (activities.RotateDueResult, error) {
			calls = append(calls, in)
			if in.Cursor == uuid.Nil {
				return activities.RotateDueResult{Next: &b, Orgs: 2, Rotated: []activities.OrgKeyRef{{OrgID: a, Version: 2}},
					Unfinished: []activities.OrgKeyRef{{OrgID: b, Version: 5}}}, nil
			}
			return activities.RotateDueResult{Orgs: 1, Rotated: []activities.OrgKeyRef{{OrgID: c, Version: 9}}, Failed: 1}, nil
		})
	var children []string
	env.OnWorkflow(OrgKeyResealWorkflow, mock.Anything, mock.Anything).Return(
		func(ctx workflow.Context, in OrgKeyResealInput) (OrgKeyResealResult, error) {
			children = append(children, workflow.GetInfo(ctx).WorkflowExecution.ID)
			return OrgKeyResealResult{}, nil
		})
	env.RegisterWorkflow(KeyRotationWorkflow)
	env.ExecuteWorkflow(KeyRotationWorkflow, KeyRotationInput{Period: 365 * day, MaxRotations: 10})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var out KeyRotationResult
	require.NoError(t, env.GetWorkflowResult(&out))
	assert.Equal(t, KeyRotationResult{Orgs: 3, Rotated: 2, ResealsStarted: 3, Failed: 1}, out)
	require.Len(t, calls, 2)
	assert.Equal(t, 10, calls[0].MaxRotations)
	assert.Equal(t, 9, calls[1].MaxRotations, "the pass's budget shrinks by what it rotated")
	assert.Equal(t, b, calls[1].Cursor)
	assert.ElementsMatch(t, []string{OrgKeyResealWorkflowID(a, 2), OrgKeyResealWorkflowID(b, 5), OrgKeyResealWorkflowID(c, 9)}, children)
	assert.Equal(t, "org-key-reseal/"+a.String()+"/v2", OrgKeyResealWorkflowID(a, 2))
}
