package jirasim

import (
	"fmt"
	"net/http"
)

// OpProjectStatuses is GET project/{projectIdOrKey}/statuses (Cloud v3 and Data Center v2).
const OpProjectStatuses = "project.statuses"

// handleProjectStatuses answers GET project/{projectIdOrKey}/statuses: the project's issue types,
// each with the statuses of its workflow (Atlassian: "Get all statuses for project" — Browse
// Projects permission; 404 when the project is not found or not visible). An unpaged array of
// {self, id, name, subtask, statuses: [StatusDetails]}. The site has one workflow, so every issue
// type lists the same statuses, in workflow order.
func (s *Sim) handleProjectStatuses(projectRef string) handlerFunc {
	return func(w http.ResponseWriter, _ *http.Request, c *call) {
		s.mu.RLock()
		_, found := s.st.findProject(projectRef)
		s.mu.RUnlock()
		if !found {
			writeErrors(w, http.StatusNotFound, []string{fmt.Sprintf("No project could be found with key '%s'.", projectRef)}, nil)
			return
		}
		sts := make([]any, 0, numStatuses)
		for st := range numStatuses {
			sts = append(sts, renderStatus(c.rc, st))
		}
		out := make([]any, 0, numIssueTypes)
		for t := range numIssueTypes {
			td := issueTypes[t]
			out = append(out, map[string]any{
				"self": c.rc.api("issuetype/" + td.id), "id": td.id, "name": td.name, "subtask": false, "statuses": sts,
			})
		}
		writeJSON(w, http.StatusOK, out)
	}
}
