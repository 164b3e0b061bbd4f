package activities

import (
	"context"
	"errors"

	"go.temporal.io/sdk/temporal"

	"github.com/jiraconnect/jiraconnect/failure"
)

// applicationError turns a classified failure into the error an activity returns. The message is
// the error's own text (see failure.Failure.Message), so it may be stored on runs and the
// connection and shown to the tenant. The cause is deliberately not attached, so nothing beyond
// that text enters workflow history.
func applicationError(f failure.Failure) error {
	return temporal.NewApplicationErrorWithOptions(f.Message, f.Type, temporal.ApplicationErrorOptions{
		NonRetryable:   !f.Retryable,
		NextRetryDelay: f.Delay,
	})
}

// activityError classifies err (failure.Classify) and returns it as a temporal.ApplicationError.
// A context error of the activity's own context is returned as is, so that Temporal reports a
// cancelled activity as cancelled rather than as failed.
func activityError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	return applicationError(failure.Classify(err))
}
