package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// The production binary must not link the Temporal server: it is large, has its own security
// surface, and production talks to an external cluster.
func TestProductionBinaryDoesNotLinkTemporalServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("suspiciously few dependencies: %d", len(deps))
	}
	var sdk bool
	for _, d := range deps {
		if strings.HasPrefix(d, "go.temporal.io/server") || strings.HasPrefix(d, "github.com/temporalio/ui-server") {
			t.Errorf("cmd/jiraconnect links %s", d)
		}
		sdk = sdk || d == "go.temporal.io/sdk/client"
	}
	if !sdk {
		t.Error("cmd/jiraconnect does not link the Temporal SDK client; the dependency list is not what it seems")
	}
}

func TestCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "jiraconnect ") {
		t.Fatalf("version: %q %v", out.String(), err)
	}
	for _, args := range [][]string{nil, {"frobnicate"}} {
		err := run(context.Background(), args, &out, &errOut)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("run(%v): %v, want a usage error", args, err)
		}
	}
}
