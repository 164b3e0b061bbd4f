package jira_test

import (
	"context"
	"testing"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/jql"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// evidence is what a daily evidence sync reads from a site.
type evidence struct {
	projects, total, open int
	sample                []jira.Issue
}

// evidenceQueries are the bounded JQL queries of an evidence read.
func evidenceQueries(t testing.TB) (total, open, sample string) {
	total = mustJQL(t, jql.Query{Where: jql.IsNotEmpty("project")})
	open = mustJQL(t, jql.Query{Where: jql.NotEq("statusCategory", "done")})
	sample = mustJQL(t, jql.Query{
		Where: jql.And(jql.Eq("labels", "security"), jql.Eq("statusCategory", "done"), jql.IsNotEmpty("resolution"),
			jql.GreaterEq("resolved", jql.DaysAgo(30))),
		OrderBy: []jql.Order{jql.Desc("resolved")},
	})
	return total, open, sample
}

// readEvidence performs an evidence-style read: project count, total and open issue counts and
// one page of recently resolved security issues. Its number of Jira calls must not depend on the
// size of the site.
func readEvidence(ctx context.Context, c *jira.Client, total, open, sample string) (evidence, error) {
	var ev evidence
	var err error
	if ev.projects, err = c.ProjectCount(ctx); err != nil {
		return ev, err
	}
	if ev.total, err = c.ApproximateCount(ctx, total); err != nil {
		return ev, err
	}
	if ev.open, err = c.ApproximateCount(ctx, open); err != nil {
		return ev, err
	}
	page, err := c.Search(ctx, jira.SearchRequest{JQL: sample, Fields: []string{"summary", "status", "resolution", "resolutiondate", "labels"}, MaxResults: 20})
	if err != nil {
		return ev, err
	}
	ev.sample = page.Issues
	return ev, nil
}

func seeded(t testing.TB, flavor jirasim.Flavor, projects, issues int) *jirasim.Server {
	t.Helper()
	srv := startSim(t, flavor)
	if _, err := srv.Seed(7, jirasim.SeedSpec{Projects: projects, Issues: issues, SecurityShare: 0.05, ResolvedRecentShare: 0.1}); err != nil {
		t.Fatal(err)
	}
	return srv
}

func siteFor(t testing.TB, srv *jirasim.Server) *site {
	if srv.Flavor() == jirasim.DataCenter {
		return dcSite(t, srv)
	}
	return cloudTokenSite(t, srv)
}

// TestEvidenceReadCallsDoNotGrowWithSiteSize is the fast, always-run version of the benchmark.
func TestEvidenceReadCallsDoNotGrowWithSiteSize(t *testing.T) {
	total, open, sample := evidenceQueries(t)
	for _, flavor := range []jirasim.Flavor{jirasim.Cloud, jirasim.DataCenter} {
		var calls []int
		for _, size := range [][2]int{{5, 2000}, {300, 20000}} {
			srv := seeded(t, flavor, size[0], size[1])
			s := siteFor(t, srv)
			ev, err := readEvidence(context.Background(), s.c, total, open, sample)
			if err != nil {
				t.Fatal(err)
			}
			if ev.projects != size[0] || ev.total != size[1] || ev.open <= 0 || ev.open >= ev.total || len(ev.sample) == 0 {
				t.Errorf("%s %v: %+v", flavor, size, ev)
			}
			calls = append(calls, s.stats.Total())
		}
		if calls[0] != 4 || calls[1] != 4 {
			t.Errorf("%s: calls per read %v, want 4 at every size", flavor, calls)
		}
	}
}

func BenchmarkEvidenceReadCalls(b *testing.B) {
	total, open, sample := evidenceQueries(b)
	for _, flavor := range []jirasim.Flavor{jirasim.Cloud, jirasim.DataCenter} {
		for _, size := range []struct {
			name             string
			projects, issues int
		}{{"10p-1k", 10, 1_000}, {"10kp-1M", 10_000, 1_000_000}} {
			b.Run(string(flavor)+"/"+size.name, func(b *testing.B) {
				srv := seeded(b, flavor, size.projects, size.issues) // outside the timer
				s := siteFor(b, srv)
				ctx := context.Background()
				for b.Loop() {
					if _, err := readEvidence(ctx, s.c, total, open, sample); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(s.stats.Total())/float64(b.N), "calls/op")
			})
		}
	}
}
