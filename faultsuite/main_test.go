package faultsuite

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/db/dbtest"
)

var testDB *dbtest.Database

// Paths of the binaries TestMain builds.
var (
	binJiraconnect string // cmd/jiraconnect: the production binary (api, worker, migrate, orgs)
	binJirasim     string // cmd/jirasim
	binDev         string // cmd/jiraconnect-dev, run with --temporal-only
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "faultsuite-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultsuite:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildBinaries(dir); err != nil {
		fmt.Fprintln(os.Stderr, "faultsuite:", err)
		return 1
	}
	return dbtest.Run(m, &testDB)
}

// buildBinaries builds the three commands with one `go build` (shared work, one link each). The
// package directory is the module root's faultsuite/, so the commands are one level up.
func buildBinaries(dir string) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator), "./cmd/jiraconnect", "./cmd/jirasim", "./cmd/jiraconnect-dev")
	cmd.Dir = ".."
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	binJiraconnect = filepath.Join(dir, "jiraconnect")
	binJirasim = filepath.Join(dir, "jirasim")
	binDev = filepath.Join(dir, "jiraconnect-dev")
	fmt.Fprintf(os.Stderr, "faultsuite: built jiraconnect, jirasim and jiraconnect-dev in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}
