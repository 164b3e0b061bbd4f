package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuickRun runs every scenario at smoke-test size through the same entry point as
// `make bench`, so a scenario that stops working fails CI instead of the next benchmark run. The
// figures at this size mean nothing; the test checks that each scenario measured something and
// that the JSON report holds what the table printed.
func TestQuickRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "latest.json")
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-quick", "-out", out}, &stdout, &stderr)
	t.Logf("table:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("bench -quick: %v\nlog:\n%s", err, tail(stderr.String(), 8000))
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
	if rep.GoVersion == "" || rep.NumCPU < 1 || rep.Date.IsZero() {
		t.Errorf("machine facts missing: %+v", rep)
	}
	want := scenarios()
	if len(rep.Results) != len(want) {
		t.Fatalf("%d results, want %d", len(rep.Results), len(want))
	}
	for i, r := range rep.Results {
		if r.Scenario != want[i].Name() || r.Error != "" || len(r.Figures) == 0 || len(r.Parameters) == 0 {
			t.Errorf("result %+v", r)
		}
		for _, f := range r.Figures {
			if f.Target != "" && f.Met == nil {
				t.Errorf("%s/%s has a target but no verdict", r.Scenario, f.Name)
			}
			if !strings.Contains(stdout.String(), f.Name) {
				t.Errorf("table lacks %s/%s", r.Scenario, f.Name)
			}
		}
	}
}

func TestSelectScenarios(t *testing.T) {
	all := scenarios()
	if got, err := selectScenarios(all, ""); err != nil || len(got) != len(all) {
		t.Fatalf("all: %v %d", err, len(got))
	}
	got, err := selectScenarios(all, all[1].Name()+", "+all[0].Name())
	if err != nil || len(got) != 2 || got[0] != all[1] || got[1] != all[0] {
		t.Fatalf("two named: %v %v", err, got)
	}
	if _, err := selectScenarios(all, "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown name: %v", err)
	}
}

func TestPercentile(t *testing.T) {
	var l Latencies
	if l.Percentile(99) != 0 {
		t.Fatal("empty")
	}
	for i := 100; i >= 1; i-- {
		l.Add(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}} {
		if got := l.Percentile(c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
}

func TestFiguresAndTargets(t *testing.T) {
	r := &Result{Scenario: "x"}
	r.AtMost("ratio", 1.6, "x", 1.5)
	r.AtLeast("rate", 25, "/s", 20)
	r.Add("calls", 4, "calls")
	if *r.Figures[0].Met || !*r.Figures[1].Met || r.Figures[2].Met != nil {
		t.Fatalf("verdicts: %+v", r.Figures)
	}
	rep := &Report{Results: []*Result{r, {Scenario: "broken", Error: "boom"}}}
	var buf bytes.Buffer
	rep.PrintTable(&buf)
	for _, want := range []string{"MISSED", "met", "≤ 1.5", "≥ 20", "FAILED (error)", "boom"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
