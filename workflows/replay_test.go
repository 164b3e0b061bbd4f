package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
)

// TestReplayRecordedHistories replays histories recorded from a real Temporal server (see
// record_test.go, build tag recordhistory) against the current workflow code. A change that makes
// the workflow issue different commands for the same history — reordering activities, adding a
// timer, changing when search attributes are upserted — fails here instead of breaking the
// workflows already running in production. Such a change needs workflow.GetVersion (and a
// re-recorded history next to the old one, which must keep replaying).
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recorded histories in testdata/: run go test -tags recordhistory -run TestRecordHistories ./workflows/")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			replayer := worker.NewWorkflowReplayer()
			replayer.RegisterWorkflow(ConnectionWorkflow)
			if err := replayer.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
