package workflows

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/jiraconnect/jiraconnect/activities"
)

// Key rotation is Temporal work an operator can watch in the UI:
//
//   - OrgKeyResealWorkflow (id org-key-reseal/<org>/v<version>) follows each rotation of an
//     organization's data key: it re-seals everything sealed under older versions, waits until
//     no process can still be sealing under them, re-seals whatever such a process wrote
//     meanwhile, and retires the versions nothing references any more.
//   - KeyRotationWorkflow runs daily from the org-key-rotation schedule: it rotates the data key
//     of every organization whose current version is older than DATA_KEY_ROTATION_PERIOD and
//     starts (again) the re-seal of every organization that has one unfinished.
//   - OrgKeyRewrapWorkflow (id org-key-rewrap) is started by an operator after the master key
//     changed: it re-wraps every organization's data key versions under the new one.
//
// Every step is resumable: the activities work from cursors, every write is a compare-and-set or
// idempotent, and a value is always readable whichever step was interrupted.

// KeyRotationScheduleID is the Temporal schedule that runs KeyRotationWorkflow daily; each run's
// workflow id starts with it.
const KeyRotationScheduleID = "org-key-rotation"

// OrgKeyRewrapWorkflowID is the id of the re-wrap pass: one at a time.
const OrgKeyRewrapWorkflowID = "org-key-rewrap"

// OrgKeyResealWorkflowID is the id of the re-seal that follows the rotation of orgID's data key
// to version: derived from both, so starting it twice for one rotation is one workflow, and
// each rotation has its own.
func OrgKeyResealWorkflowID(orgID uuid.UUID, version int32) string {
	return fmt.Sprintf("org-key-reseal/%s/v%d", orgID, version)
}

// maxResealRounds bounds the re-seal/wait/retire rounds of one OrgKeyResealWorkflow. Two suffice
// unless the organization is rotated again meanwhile; whatever is left is picked up by the next
// scheduled pass, which starts the workflow of the newest version.
const maxResealRounds = 5

// OrgKeyResealInput names the rotation a re-seal follows.
type OrgKeyResealInput struct {
	OrgID uuid.UUID `json:"org_id"`
	// Version is the version the rotation created (it names the workflow; the re-seal always
	// targets the organization's current version).
	Version int32 `json:"version"`
	// Grace overrides the wait between the rotation and the retirement of older versions (0:
	// activities.DefaultRetireGrace of the worker's KEY_CACHE_TTL).
	Grace time.Duration `json:"grace,omitempty"`
}

// OrgKeyResealResult is what a re-seal did.
type OrgKeyResealResult struct {
	Rounds int                     `json:"rounds"`
	Reseal activities.ResealResult `json:"reseal"`
	// Retired are the versions retired; InUse the older versions left live with the number of
	// values they still seal (values that do not open, which only a re-authorization replaces).
	Retired []int32         `json:"retired,omitempty"`
	InUse   map[int32]int64 `json:"in_use,omitempty"`
}

// OrgKeyResealWorkflow re-seals an organization's secrets after a data key rotation and retires
// the versions that no longer seal anything. Each round re-seals every connection (bounded
// ResealOrgSecrets activities, each continuing from the cursor of the previous one), then asks
// RetireOrgKeyVersions to retire; while the current version is younger than the grace (a process
// may still be sealing under an older version from its key cache) that answers how long to wait,
// the workflow sleeps on a durable timer and runs another round, which also re-seals whatever
// such a process stored meanwhile.
func OrgKeyResealWorkflow(ctx workflow.Context, in OrgKeyResealInput) (OrgKeyResealResult, error) {
	if in.OrgID == uuid.Nil || in.Grace < 0 {
		return OrgKeyResealResult{}, temporal.NewNonRetryableApplicationError("reseal: org_id is required and grace must not be negative", "invalid_input", nil)
	}
	var a *activities.Activities
	ctx = workflow.WithActivityOptions(ctx, activities.KeyRotationOptions())
	var out OrgKeyResealResult
	for out.Rounds < maxResealRounds {
		out.Rounds++
		req := activities.ResealInput{OrgID: in.OrgID}
		for {
			var page activities.ResealResult
			if err := workflow.ExecuteActivity(ctx, a.ResealOrgSecrets, req).Get(ctx, &page); err != nil {
				return out, fmt.Errorf("reseal organization %s after %s: %w", in.OrgID, req.After, err)
			}
			out.Reseal.Add(page)
			if page.Next == nil {
				break
			}
			req.After = *page.Next
		}
		var retired activities.RetireResult
		if err := workflow.ExecuteActivity(ctx, a.RetireOrgKeyVersions, activities.RetireInput{OrgID: in.OrgID, Grace: in.Grace}).Get(ctx, &retired); err != nil {
			return out, fmt.Errorf("retire data key versions of organization %s: %w", in.OrgID, err)
		}
		out.Retired = append(out.Retired, retired.Retired...)
		out.InUse = retired.InUse
		if retired.WaitFor <= 0 {
			return out, nil
		}
		if err := workflow.Sleep(ctx, retired.WaitFor); err != nil {
			return out, err
		}
	}
	return out, nil
}

// KeyRotationInput configures one scheduled rotation pass (the schedule's action carries it, from
// DATA_KEY_ROTATION_PERIOD).
type KeyRotationInput struct {
	// Period: organizations whose current data key version is at least this old are rotated;
	// 0 rotates none and only resumes unfinished re-seals.
	Period time.Duration `json:"period"`
	// MaxRotations bounds the rotations of one pass (0: activities.DefaultMaxRotationsPerPass).
	MaxRotations int `json:"max_rotations,omitempty"`
}

// KeyRotationResult is what a scheduled pass did.
type KeyRotationResult struct {
	Orgs    int `json:"orgs"`
	Rotated int `json:"rotated"`
	// ResealsStarted counts the re-seal workflows started (for new rotations and for unfinished
	// ones); ResealsRunning those that were already running.
	ResealsStarted int `json:"reseals_started"`
	ResealsRunning int `json:"reseals_running"`
	Failed         int `json:"failed"`
}

// KeyRotationWorkflow is one scheduled rotation pass: RotateDueOrgKeys over every organization
// (bounded calls from a cursor), and for each rotation it made, and each organization whose
// re-seal is unfinished, a child OrgKeyResealWorkflow under the rotation's workflow id, abandoned
// on completion so it outlives the pass (its id makes a second start of a running one a no-op).
func KeyRotationWorkflow(ctx workflow.Context, in KeyRotationInput) (KeyRotationResult, error) {
	if in.Period < 0 || in.MaxRotations < 0 {
		return KeyRotationResult{}, temporal.NewNonRetryableApplicationError("key rotation: period and max_rotations must not be negative", "invalid_input", nil)
	}
	maxRotations := in.MaxRotations
	if maxRotations == 0 {
		maxRotations = activities.DefaultMaxRotationsPerPass
	}
	var a *activities.Activities
	actx := workflow.WithActivityOptions(ctx, activities.KeyRotationOptions())
	var out KeyRotationResult
	req := activities.RotateDueInput{Period: in.Period}
	for {
		req.MaxRotations = maxRotations - out.Rotated
		var page activities.RotateDueResult
		if err := workflow.ExecuteActivity(actx, a.RotateDueOrgKeys, req).Get(actx, &page); err != nil {
			return out, fmt.Errorf("rotate due organization keys after %s: %w", req.Cursor, err)
		}
		out.Orgs += page.Orgs
		out.Rotated += len(page.Rotated)
		out.Failed += page.Failed
		for _, ref := range append(page.Rotated, page.Unfinished...) {
			started, err := startReseal(ctx, ref)
			if err != nil {
				return out, err
			}
			if started {
				out.ResealsStarted++
			} else {
				out.ResealsRunning++
			}
		}
		if page.Next == nil {
			return out, nil
		}
		req.Cursor = *page.Next
	}
}

// startReseal starts the re-seal of ref as an abandoned child and waits until it has started;
// false without error when it is already running.
func startReseal(ctx workflow.Context, ref activities.OrgKeyRef) (bool, error) {
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            OrgKeyResealWorkflowID(ref.OrgID, ref.Version),
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	})
	f := workflow.ExecuteChildWorkflow(cctx, OrgKeyResealWorkflow, OrgKeyResealInput{OrgID: ref.OrgID, Version: ref.Version})
	err := f.GetChildWorkflowExecution().Get(ctx, nil)
	var already *temporal.ChildWorkflowExecutionAlreadyStartedError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &already):
		return false, nil
	}
	return false, fmt.Errorf("start the re-seal of organization %s version %d: %w", ref.OrgID, ref.Version, err)
}

// OrgKeyRewrapInput configures a re-wrap pass (the zero value: every organization).
type OrgKeyRewrapInput struct {
	// Limit bounds the organizations per activity (0: activities.DefaultRotateOrgsPerCall).
	Limit int `json:"limit,omitempty"`
}

// OrgKeyRewrapWorkflow re-wraps every organization's data key versions under the worker's current
// master key, in bounded RewrapOrgKeys activities each continuing from the previous cursor, and
// returns the totals: when MasterKeyIDs holds only the new key and FailedOrgs is empty, nothing
// needs the old master key any more and it can be disabled.
func OrgKeyRewrapWorkflow(ctx workflow.Context, in OrgKeyRewrapInput) (activities.RewrapResult, error) {
	if in.Limit < 0 {
		return activities.RewrapResult{}, temporal.NewNonRetryableApplicationError("rewrap: limit must not be negative", "invalid_input", nil)
	}
	var a *activities.Activities
	ctx = workflow.WithActivityOptions(ctx, activities.KeyRotationOptions())
	var out activities.RewrapResult
	req := activities.RewrapInput{Limit: in.Limit}
	for {
		var page activities.RewrapResult
		if err := workflow.ExecuteActivity(ctx, a.RewrapOrgKeys, req).Get(ctx, &page); err != nil {
			return out, fmt.Errorf("rewrap organization keys after %s: %w", req.Cursor, err)
		}
		out.Add(page)
		if page.Next == nil {
			return out, nil
		}
		req.Cursor = *page.Next
	}
}
