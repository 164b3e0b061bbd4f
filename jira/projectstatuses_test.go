package jira_test

import (
	"context"
	"testing"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

func TestE2EProjectStatuses(t *testing.T) {
	for _, s := range allSites(t, seedSmall) {
		t.Run(s.name, func(t *testing.T) {
			ctx := context.Background()
			types, err := s.c.ProjectStatuses(ctx, "SEC")
			if err != nil {
				t.Fatal(err)
			}
			var vuln *jira.IssueTypeStatuses
			for i := range types {
				if types[i].IssueType.ID == jirasim.IssueTypeVulnerability {
					vuln = &types[i]
				}
			}
			if len(types) != 5 || vuln == nil || vuln.IssueType.Name != "Vulnerability" {
				t.Fatalf("issue types %+v", types)
			}
			byName := map[string]jira.Status{}
			for _, st := range vuln.Statuses {
				byName[st.Name] = st
			}
			if len(byName) != 5 || byName["To Do"].ID != jirasim.StatusToDo || byName["To Do"].Category.Key != "new" ||
				byName["In Progress"].Category.Key != "indeterminate" || byName["Won't Do"].Category.Key != "done" {
				t.Fatalf("statuses %+v", vuln.Statuses)
			}
			// By id as well as by key; an unknown project is not found, an invalid key never reaches Jira.
			p, ok := s.srv.GetProject("SEC")
			if !ok {
				t.Fatal("no SEC project")
			}
			if byID, err := s.c.ProjectStatuses(ctx, p.ID); err != nil || len(byID) != len(types) {
				t.Fatalf("by id: %d issue types, %v", len(byID), err)
			}
			_, err = s.c.ProjectStatuses(ctx, "NOPE")
			kindIs(t, err, jira.KindNotFound)
			_, err = s.c.ProjectStatuses(ctx, "../x")
			kindIs(t, err, jira.KindConfig)
			if n := s.stats.ByOp()["project.statuses"]; n != 3 {
				t.Errorf("project.statuses calls = %d, want 3", n)
			}
		})
	}
}
