package jira_test

import (
	"context"
	"testing"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// The simulator's workflow, like many real ones, only resolves from In Progress and only reopens
// to To Do: MoveTo must click through, one real transition per step, and stop when already there.
func TestMoveToWalksMultiHopWorkflows(t *testing.T) {
	for _, flavor := range []jirasim.Flavor{jirasim.Cloud, jirasim.DataCenter} {
		t.Run(string(flavor), func(t *testing.T) {
			srv := startSim(t, flavor)
			seedSmall(srv)
			var s *site
			if flavor == jirasim.Cloud {
				s = cloudTokenSite(t, srv)
			} else {
				s = dcSite(t, srv)
			}
			ctx := context.Background()
			issue, err := srv.AddIssue(jirasim.IssueSpec{Project: "SEC", Summary: "multi-hop"})
			if err != nil {
				t.Fatal(err)
			}
			done := jira.Target{StatusName: "Done", CategoryKey: "done", Resolution: "Done"}
			wontDo := jira.Target{StatusName: "Won't Do", CategoryKey: "done", Resolution: "Won't Do"}
			steps := []struct {
				target jira.Target
				want   string
				posts  int
			}{
				{done, "Done", 2},       // To Do → In Progress → Done
				{done, "Done", 0},       // already there: no transition call
				{wontDo, "Won't Do", 3}, // Done → To Do → In Progress → Won't Do
				{jira.Target{StatusName: "To Do", CategoryKey: "new"}, "To Do", 1}, // reopen
				{jira.Target{StatusName: "In Progress", CategoryKey: "indeterminate"}, "In Progress", 1},
			}
			for i, st := range steps {
				before := postCount(srv)
				res, err := s.c.MoveTo(ctx, issue.Key, st.target, 0)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				got, _ := srv.Issue(issue.Key)
				if got.Status != st.want || res.To.Name != st.want {
					t.Fatalf("step %d: issue in %q (result %q), want %q", i, got.Status, res.To.Name, st.want)
				}
				if n := postCount(srv) - before; n != st.posts {
					t.Errorf("step %d: %d transition calls, want %d", i, n, st.posts)
				}
				if res.Changed != (st.posts > 0) {
					t.Errorf("step %d: Changed=%t", i, res.Changed)
				}
			}
			if got, _ := srv.Issue(issue.Key); got.Resolution != "" {
				t.Errorf("reopened issue kept resolution %q", got.Resolution)
			}
			// An unknown status name in a category with no path stays an error, not a guess.
			if _, err := s.c.MoveTo(ctx, issue.Key, jira.Target{StatusName: "Deployed"}, 0); jira.KindOf(err) != jira.KindTransitionUnavailable {
				t.Fatalf("unreachable target: %v", err)
			}
		})
	}
}

func postCount(srv *jirasim.Server) int {
	n := 0
	for _, r := range srv.Requests() {
		if r.Method == "POST" && len(r.Path) > 12 && r.Path[len(r.Path)-12:] == "/transitions" && r.Status == 204 {
			n++
		}
	}
	return n
}
