package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what one `make bench` run writes to bench/results/latest.json: the machine it ran on
// and every scenario's figures.
type Report struct {
	Date      time.Time `json:"date"`
	GoVersion string    `json:"go_version"`
	GOOS      string    `json:"goos"`
	GOARCH    string    `json:"goarch"`
	NumCPU    int       `json:"num_cpu"`
	CPUModel  string    `json:"cpu_model,omitempty"`
	MemTotal  string    `json:"mem_total,omitempty"`
	Results   []*Result `json:"results"`
}

// Result is one scenario's outcome. A scenario that fails keeps its error and whatever figures it
// measured before failing, so the table says what happened instead of hiding the row.
type Result struct {
	Scenario   string         `json:"scenario"`
	Title      string         `json:"title"`
	Parameters map[string]any `json:"parameters"`
	Figures    []Figure       `json:"figures"`
	Notes      []string       `json:"notes,omitempty"`
	Error      string         `json:"error,omitempty"`
	Seconds    float64        `json:"seconds"`
}

// Figure is one measured number, with the target it is judged against when there is one.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Target is human-readable ("≥ 20", "≤ 1.5"); Met is nil when the figure has no target.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
}

// Add records a figure without a target.
func (r *Result) Add(name string, value float64, unit string) {
	r.Figures = append(r.Figures, Figure{Name: name, Value: value, Unit: unit})
}

// AtMost records a figure whose target is value ≤ limit.
func (r *Result) AtMost(name string, value float64, unit string, limit float64) {
	met := value <= limit
	r.Figures = append(r.Figures, Figure{Name: name, Value: value, Unit: unit, Target: "≤ " + formatValue(limit), Met: &met})
}

// AtLeast records a figure whose target is value ≥ limit.
func (r *Result) AtLeast(name string, value float64, unit string, limit float64) {
	met := value >= limit
	r.Figures = append(r.Figures, Figure{Name: name, Value: value, Unit: unit, Target: "≥ " + formatValue(limit), Met: &met})
}

// Note adds a sentence shown under the table (how a figure was measured, what it includes).
func (r *Result) Note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func newReport() *Report {
	rep := &Report{Date: time.Now().UTC(), GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, NumCPU: runtime.NumCPU()}
	rep.CPUModel, rep.MemTotal = machineFacts()
	return rep
}

// machineFacts reads the CPU model and memory size on Linux; elsewhere they stay empty.
func machineFacts() (cpu, mem string) {
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && k == "MemTotal" {
				mem = strings.TrimSpace(v)
				break
			}
		}
	}
	return cpu, mem
}

// WriteJSON writes the report to path (directories created).
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// PrintTable writes the human-readable table: one row a figure, the target and whether it was
// met, then each scenario's parameters, notes and error.
func (rep *Report) PrintTable(w io.Writer) {
	fmt.Fprintf(w, "jiraconnect benchmarks — %s, %s %s/%s, %d CPUs (%s), %s\n\n", rep.Date.Format(time.RFC3339),
		rep.GoVersion, rep.GOOS, rep.GOARCH, rep.NumCPU, orDash(rep.CPUModel), orDash(rep.MemTotal))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tfigure\tvalue\tunit\ttarget\tverdict")
	for _, r := range rep.Results {
		if len(r.Figures) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t%s\n", r.Scenario, verdictOf(nil, r.Error))
		}
		for _, f := range r.Figures {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, f.Name, formatValue(f.Value), f.Unit, orDash(f.Target), verdictOf(f.Met, ""))
		}
	}
	_ = tw.Flush()
	for _, r := range rep.Results {
		fmt.Fprintf(w, "\n%s — %s (%.1fs)\n", r.Scenario, r.Title, r.Seconds)
		keys := make([]string, 0, len(r.Parameters))
		for k := range r.Parameters {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s = %v\n", k, r.Parameters[k])
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  ERROR: %s\n", r.Error)
		}
	}
}

func verdictOf(met *bool, errText string) string {
	switch {
	case errText != "":
		return "FAILED (error)"
	case met == nil:
		return "-"
	case *met:
		return "met"
	default:
		return "MISSED"
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// formatValue prints integers without decimals and other numbers with three significant decimals.
func formatValue(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprint(v)
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	if math.Abs(v) >= 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3g", v)
}
