package connections

// Check is one step of a connection test.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// IssueKey names the Jira issue a check created or changed (the synthetic test issue), so the
	// request that caused the write can be audited with it.
	IssueKey string `json:"issue_key,omitempty"`
}

// TestResult is the report of a connection test: the answer of the workflow's test update, the
// result of the TestConnection activity and the body of POST /v1/connections/{id}/test.
type TestResult struct {
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// TestIssueKey is the synthetic issue the test created or reused in Jira ("" when it wrote none).
func (r TestResult) TestIssueKey() string {
	for _, c := range r.Checks {
		if c.IssueKey != "" {
			return c.IssueKey
		}
	}
	return ""
}

// FailedChecks names the checks that did not pass, in order.
func (r TestResult) FailedChecks() []string {
	var failed []string
	for _, c := range r.Checks {
		if !c.OK {
			failed = append(failed, c.Name)
		}
	}
	return failed
}
