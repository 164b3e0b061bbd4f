// Package worker wires jiraconnect's Temporal worker: the client (logger, metrics), search
// attribute registration, and the registration of workflows and activities on the
// jira-connections task queue.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// ClientOptions configures a Temporal client.
type ClientOptions struct {
	HostPort  string
	Namespace string
	Logger    *slog.Logger
	Metrics   client.MetricsHandler
}

// Dial connects a Temporal client that logs through slog and reports SDK metrics.
func Dial(ctx context.Context, o ClientOptions) (client.Client, error) {
	c, err := client.DialContext(ctx, client.Options{
		HostPort:       o.HostPort,
		Namespace:      o.Namespace,
		Logger:         sdklog.NewStructuredLogger(o.Logger.With("component", "temporal")),
		MetricsHandler: o.Metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to temporal at %s: %w", o.HostPort, err)
	}
	return c, nil
}

// SearchAttributes lists the custom search attributes connection workflows set.
func SearchAttributes() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		workflows.AttrOrgID.GetName():            enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		workflows.AttrConnectionStatus.GetName(): enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		workflows.AttrStale.GetName():            enumspb.INDEXED_VALUE_TYPE_BOOL,
		workflows.AttrNeedsReauth.GetName():      enumspb.INDEXED_VALUE_TYPE_BOOL,
	}
}

// EnsureSearchAttributes registers any missing search attribute in namespace. It is idempotent,
// so every worker start may call it. Where the operator API is not permitted (e.g. a managed
// namespace), the error says which attributes an operator must create.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	want := SearchAttributes()
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes of namespace %s: %w", namespace, err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range want {
		if _, ok := resp.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: namespace, SearchAttributes: missing,
	})
	var exists *serviceerror.AlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("add search attributes %v to namespace %s (create them with `temporal operator search-attribute create`): %w",
			keys(missing), namespace, err)
	}
	return nil
}

func keys(m map[string]enumspb.IndexedValueType) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Register adds every workflow and activity to r. Tests and the production worker share it, so a
// workflow or activity cannot be forgotten in one of them.
func Register(r worker.Registry, acts *activities.Activities) {
	r.RegisterWorkflow(workflows.ConnectionWorkflow)
	r.RegisterWorkflow(workflows.RetentionWorkflow)
	r.RegisterWorkflow(workflows.SupervisorWorkflow)
	r.RegisterWorkflow(workflows.OrgKeyResealWorkflow)
	r.RegisterWorkflow(workflows.KeyRotationWorkflow)
	r.RegisterWorkflow(workflows.OrgKeyRewrapWorkflow)
	acts.Register(r)
}

// SetWorkflowCacheSize bounds the sticky workflow cache of every worker in this process (the
// SDK keeps one cache per process, created when the first worker starts; a size set later applies
// only if that cache is created again).
func SetWorkflowCacheSize(n int) { worker.SetStickyWorkflowCacheSize(n) }

// New creates a worker on taskQueue with everything registered.
func New(c client.Client, taskQueue string, acts *activities.Activities) worker.Worker {
	w := worker.New(c, taskQueue, worker.Options{
		// Cancellation reaches an activity only with a heartbeat response, and the SDK batches
		// heartbeats up to this interval: a revoke stops an in-flight sync within seconds. The
		// SDK also uses it as the heartbeat call's deadline and cancels the attempt when a call
		// misses it, so it must outlast a heartbeat queued behind a busy server (2 s did not,
		// under a fleet-wide burst on the dev stack's SQLite store).
		MaxHeartbeatThrottleInterval: 5 * time.Second,
		// A sticky workflow task waits this long for this worker before the server hands it to
		// any worker, which must then replay the whole history. A burst of sync-now requests for
		// a large fleet queues longer than the SDK's 5 s default: on the dev stack a
		// 1,000-connection burst finished at 33 syncs/s with 5 s and 58 with 30 s. A worker that
		// is gone is noticed by the server on its own (no sticky poll for 10 s), so this
		// does not hold up failover. The cost: a task the server could not queue at all (see
		// matching.outstandingTaskAppendsThreshold in README, Operations) waits this long.
		StickyScheduleToStartTimeout: 30 * time.Second,
		// Workflow tasks (sync-now updates, signals, activity results) are short; with the SDK's
		// two pollers a burst of updates waited for a free poller while the server sat idle, and
		// every task no poller was waiting for cost the server a write to its task store. 16
		// answered a 1,000-connection burst fastest on the dev stack (8 and 32 were slower; the
		// SDK's poller autoscaling answered faster but slowed the activities behind it).
		MaxConcurrentWorkflowTaskPollers: 16,
	})
	Register(w, acts)
	return w
}

// EnsureRetentionSchedule creates the daily evidence-retention schedule if it does not exist. An
// existing schedule is left as it is, so an operator's pause or edit in the Temporal UI sticks.
func EnsureRetentionSchedule(ctx context.Context, c client.Client, taskQueue string, window time.Duration) error {
	_, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:   workflows.RetentionScheduleID,
		Spec: client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: 24 * time.Hour}}},
		Action: &client.ScheduleWorkflowAction{
			ID:        workflows.RetentionScheduleID,
			Workflow:  workflows.RetentionWorkflow,
			Args:      []any{activities.RetentionInput{OlderThan: window}},
			TaskQueue: taskQueue,
		},
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
	})
	if err != nil && !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return fmt.Errorf("create retention schedule: %w", err)
	}
	return nil
}

// EnsureSupervisorSchedule makes the connection-supervisor schedule run SupervisorWorkflow every
// interval (SUPERVISOR_INTERVAL). It creates the schedule if it does not exist; an existing one
// keeps its state (an operator's pause in the Temporal UI sticks) and only gets the configured
// interval if its own differs, so changing SUPERVISOR_INTERVAL takes effect at the next worker
// start. Passes never overlap: a tick while one runs is skipped.
func EnsureSupervisorSchedule(ctx context.Context, c client.Client, taskQueue string, interval time.Duration) error {
	spec := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: interval}}}
	_, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:   workflows.SupervisorScheduleID,
		Spec: spec,
		Action: &client.ScheduleWorkflowAction{
			ID:        workflows.SupervisorScheduleID,
			Workflow:  workflows.SupervisorWorkflow,
			Args:      []any{activities.SupervisorInput{}},
			TaskQueue: taskQueue,
		},
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
	})
	if err == nil {
		return nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return fmt.Errorf("create connection supervisor schedule: %w", err)
	}
	err = c.ScheduleClient().GetHandle(ctx, workflows.SupervisorScheduleID).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			if s.Spec != nil && len(s.Spec.Intervals) == 1 && s.Spec.Intervals[0].Every == interval && s.Spec.Intervals[0].Offset == 0 {
				return nil, temporal.ErrSkipScheduleUpdate
			}
			s.Spec = &spec
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
	if err != nil {
		return fmt.Errorf("update connection supervisor schedule to every %s: %w", interval, err)
	}
	return nil
}
