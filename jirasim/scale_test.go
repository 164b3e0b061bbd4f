package jirasim_test

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

// connectorCounts are the count queries the connector's evidence sync sends; each must be
// answered from the aggregates (no issue scanned).
var connectorCounts = []string{
	"project is not EMPTY",
	"created <= now()",
	"statusCategory != Done",
	"project in (SEC, P0001) AND statusCategory != Done",
	"issuetype in (Bug, Vulnerability) AND statusCategory = Done AND resolution is not EMPTY",
	"project = SEC AND created >= -36500d",
	// Security remediation: resolved in the window, open past an SLA per priority.
	`(labels = "security") AND (statusCategory = "Done") AND (resolved >= -90d)`,
	`(labels = "security") AND (statusCategory != "Done") AND (priority = "High") AND (created < -30d)`,
	`(labels = "security") AND (statusCategory != "Done") AND (priority = "Lowest") AND (created < -365d)`,
}

// sampleQuery is the recently-resolved-security sample; it may scan only its index range.
const sampleQuery = "project in (SEC, P0001, P0002) AND issuetype in (Bug, Vulnerability) AND labels in (security) AND statusCategory = Done AND resolved >= -30d ORDER BY resolved DESC"

func seeded(tb testing.TB, projects, issues int) *jirasim.Sim {
	tb.Helper()
	sim := jirasim.New(jirasim.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tb.Cleanup(func() { _ = sim.Close() })
	if _, err := sim.Seed(1, jirasim.SeedSpec{Projects: projects, Issues: issues, SecurityShare: 0.1, ResolvedRecentShare: 0.05}); err != nil {
		tb.Fatal(err)
	}
	return sim
}

func TestCountsAtScaleUseAggregates(t *testing.T) {
	projects, issues := 500, 100_000
	if !testing.Short() {
		projects, issues = 10_000, 1_000_000
	}
	sim := seeded(t, projects, issues)
	srv := startSimFor(t, sim)
	tok := sim.APIToken("admin@example.com")
	a := basic("admin@example.com", tok)

	page := call(t, "GET", srv+"/rest/api/3/project/search?maxResults=1", a, nil).json(t)
	if int(page["total"].(float64)) != projects {
		t.Fatalf("project total %v", page["total"])
	}
	sim.ResetScanStats()
	var total float64
	for _, jql := range connectorCounts {
		r := call(t, "POST", srv+"/rest/api/3/search/approximate-count", a, map[string]string{"jql": jql})
		wantStatus(t, r, 200)
		c := r.json(t)["count"].(float64)
		if jql == "project is not EMPTY" {
			total = c
		}
		if c <= 0 {
			t.Fatalf("%q counted %v", jql, c)
		}
	}
	if int(total) != issues {
		t.Fatalf("total %v, want %d", total, issues)
	}
	st := sim.ScanStats()
	if st.IssuesScanned != 0 || st.AggregateAnswers != uint64(len(connectorCounts)) {
		t.Fatalf("counts scanned issues: %+v", st)
	}

	sim.ResetScanStats()
	r := call(t, "POST", srv+"/rest/api/3/search/jql", a, map[string]any{"jql": sampleQuery, "maxResults": 50, "fields": []string{"summary", "resolutiondate", "labels"}}).json(t)
	n := len(r["issues"].([]any))
	st = sim.ScanStats()
	if n == 0 || st.FullScans != 0 || st.IssuesScanned > uint64(issues/50) {
		t.Fatalf("sample returned %d issues with %+v", n, st)
	}
	// Cross-check a count answered from a label's cells and an index-backed count against a
	// forced scan of the same predicate.
	sim.ResetScanStats()
	count := func(jql string) float64 {
		return call(t, "POST", srv+"/rest/api/3/search/approximate-count", a, map[string]string{"jql": jql}).json(t)["count"].(float64)
	}
	cells := count("labels = security AND resolved >= -30d")
	idx := count("labels = security AND resolved >= -30d AND issuetype in (Bug, Vulnerability)")
	scan := count("labels = security AND resolved >= -30d OR key = SEC-1 AND key != SEC-1")
	if cells != scan || idx != scan || idx == 0 {
		t.Fatalf("cell count %v, index count %v, scan count %v", cells, idx, scan)
	}
	if st := sim.ScanStats(); st.FullScans != 1 || st.IndexAnswers != 1 || st.AggregateAnswers != 1 {
		t.Fatalf("expected one aggregate answer, one index answer and one full scan: %+v", st)
	}
}

func startSimFor(t *testing.T, sim *jirasim.Sim) string {
	t.Helper()
	srv := newHTTPServer(sim)
	t.Cleanup(srv.Close)
	sim.SetBaseURL(srv.URL)
	return srv.URL
}

func BenchmarkSeed(b *testing.B) {
	for _, size := range []struct{ projects, issues int }{{100, 10_000}, {10_000, 1_000_000}} {
		b.Run(fmt.Sprintf("issues=%d", size.issues), func(b *testing.B) {
			var heap uint64
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				sim := jirasim.New(jirasim.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if _, err := sim.Seed(1, jirasim.SeedSpec{Projects: size.projects, Issues: size.issues, SecurityShare: 0.1, ResolvedRecentShare: 0.05}); err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				heap = after.HeapAlloc - before.HeapAlloc
				runtime.KeepAlive(sim)
				_ = sim.Close()
			}
			b.ReportMetric(float64(heap)/(1<<20), "heapMiB")
			b.ReportMetric(float64(heap)/float64(size.issues), "heapB/issue")
		})
	}
}

func BenchmarkCount(b *testing.B) {
	for _, size := range []struct{ projects, issues int }{{100, 10_000}, {10_000, 1_000_000}} {
		sim := seeded(b, size.projects, size.issues)
		srv := newHTTPServer(sim)
		sim.SetBaseURL(srv.URL)
		a := basic("admin@example.com", sim.APIToken("admin@example.com"))
		for _, q := range []struct{ name, jql string }{{"open", "statusCategory != Done"}, {"projectOpen", "project in (SEC, P0001) AND statusCategory != Done"}, {"recentSecurity", "labels = security AND statusCategory = Done AND resolved >= -30d"},
			{"openPastSLA", "labels = security AND statusCategory != Done AND priority = High AND created < -30d"}} {
			b.Run(fmt.Sprintf("issues=%d/%s", size.issues, q.name), func(b *testing.B) {
				for b.Loop() {
					r, err := tryCall("POST", srv.URL+"/rest/api/3/search/approximate-count", a, map[string]string{"jql": q.jql})
					if err != nil || r.status != 200 {
						b.Fatalf("%v %d", err, r.status)
					}
				}
			})
		}
		srv.Close()
	}
}
