package activities_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

func (h *harness) test(ref activities.ConnectionRef) (activities.TestResult, error) {
	h.t.Helper()
	val, err := h.env().ExecuteActivity(activities.NameTestConnection, ref)
	var res activities.TestResult
	if err == nil {
		if err := val.Get(&res); err != nil {
			h.t.Fatal(err)
		}
	}
	h.record(res, err)
	return res, err
}

func checkMap(res activities.TestResult) map[string]activities.Check {
	m := map[string]activities.Check{}
	for _, c := range res.Checks {
		m[c.Name] = c
	}
	return m
}

var allChecks = []string{activities.CheckCredentials, activities.CheckMyself, activities.CheckProjectVisibility,
	activities.CheckSearchPermission, activities.CheckResolvedJQL}

func TestTestConnection(t *testing.T) {
	t.Run("healthy connection of each kind", func(t *testing.T) {
		for _, tc := range []struct {
			kind   connections.Kind
			flavor jirasim.Flavor
		}{{connections.KindCloudToken, jirasim.Cloud}, {connections.KindDataCenterPAT, jirasim.DataCenter}, {connections.KindCloudOAuth, jirasim.Cloud}} {
			t.Run(string(tc.kind), func(t *testing.T) {
				h := newHarness(t)
				srv := startSim(t, tc.flavor, h.log)
				seedFixture(t, srv)
				ref := h.connect(tc.kind, srv, nil)
				srv.ResetRequests()
				res, err := h.test(ref)
				if err != nil {
					t.Fatal(err)
				}
				if !res.OK || len(res.Checks) != len(allChecks) {
					t.Fatalf("result %+v", res)
				}
				for i, c := range res.Checks {
					if c.Name != allChecks[i] || !c.OK || c.Detail == "" {
						t.Errorf("check %d: %+v", i, c)
					}
				}
				m := checkMap(res)
				if !strings.Contains(m[activities.CheckMyself].Detail, "Site Admin") ||
					!strings.Contains(m[activities.CheckProjectVisibility].Detail, "2 projects") {
					t.Errorf("details: %+v", res.Checks)
				}
				if n := jiraRequests(srv); n != 4 {
					t.Errorf("%d Jira requests, want 4", n)
				}
				runs := h.runs(ref.ConnectionID)
				if len(runs) != 1 || runs[0].Outcome != "success" || runs[0].JiraCalls != 4 || runs[0].Trigger != "test" {
					t.Fatalf("test run %+v", runs)
				}
				if n := h.count(`SELECT count(*) FROM connector_runs WHERE id = $1 AND kind = 'test' AND jsonb_array_length(report->'checks') = 5`, runs[0].ID); n != 1 {
					t.Error("checks not stored in the run report")
				}
			})
		}
	})

	t.Run("rejected credentials skip the remaining checks", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.DataCenter, h.log)
		bogus := "bogus-pat-" + uuid.NewString()
		h.secrets = append(h.secrets, bogus)
		ref := h.store(connections.KindDataCenterPAT, srv, connections.Credentials{Kind: connections.KindDataCenterPAT, PAT: jira.NewSecret(bogus)}, nil, nil)
		res, err := h.test(ref)
		if err != nil {
			t.Fatal(err)
		}
		m := checkMap(res)
		if res.OK || !m[activities.CheckCredentials].OK || m[activities.CheckMyself].OK ||
			!strings.Contains(m[activities.CheckMyself].Detail, "re-authorize") ||
			!strings.HasPrefix(m[activities.CheckResolvedJQL].Detail, "skipped") || len(res.Checks) != 5 {
			t.Fatalf("result %+v", res)
		}
		runs := h.runs(ref.ConnectionID)
		if len(runs) != 1 || runs[0].Outcome != "failed" || deref(runs[0].ErrorKind) != activities.ErrTypeReauthRequired || runs[0].JiraCalls != 1 {
			t.Fatalf("test run %+v", runs)
		}
	})

	t.Run("each failing check is reported on its own", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		cfg := connections.DefaultConfig()
		cfg.ResolvedJQL = "labels = security AND AND"
		ref := h.connect(connections.KindCloudToken, srv, &cfg) // no projects on the site
		mustFault(t, srv, "POST /rest/api/3/search/approximate-count", jirasim.Fault{ErrorRate: 1, ErrorStatus: http.StatusForbidden})
		res, err := h.test(ref)
		if err != nil {
			t.Fatal(err)
		}
		m := checkMap(res)
		if res.OK || !m[activities.CheckCredentials].OK || !m[activities.CheckMyself].OK {
			t.Fatalf("result %+v", res)
		}
		if c := m[activities.CheckProjectVisibility]; c.OK || !strings.Contains(c.Detail, "Browse Projects") {
			t.Errorf("project check %+v", c)
		}
		if c := m[activities.CheckSearchPermission]; c.OK || !strings.Contains(c.Detail, "403") {
			t.Errorf("search check %+v", c)
		}
		if c := m[activities.CheckResolvedJQL]; c.OK || !strings.Contains(c.Detail, "400") {
			t.Errorf("JQL check %+v", c)
		}
	})

	t.Run("revoked connection fails the credentials check", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		ref := h.connect(connections.KindCloudToken, srv, nil)
		if err := h.acts.RevokeCleanup(context.Background(), activities.RevokeInput{ConnectionRef: ref}); err != nil {
			t.Fatal(err)
		}
		srv.ResetRequests()
		res, err := h.test(ref)
		if err != nil {
			t.Fatal(err)
		}
		if c := checkMap(res)[activities.CheckCredentials]; res.OK || c.OK || !strings.Contains(c.Detail, "revoked") {
			t.Fatalf("result %+v", res)
		}
		if len(srv.Requests()) != 0 {
			t.Fatal("a revoked connection was tested against Jira")
		}
	})

	t.Run("OAuth connection on a worker without OAuth is a failed check", func(t *testing.T) {
		h := newHarness(t)
		srv := startSim(t, jirasim.Cloud, h.log)
		ref := h.connect(connections.KindCloudOAuth, srv, nil)
		h.conns.OAuth = nil
		res, err := h.test(ref)
		if err != nil {
			t.Fatal(err)
		}
		if c := checkMap(res)[activities.CheckCredentials]; res.OK || c.OK || !strings.Contains(c.Detail, "OAuth is not configured") {
			t.Fatalf("result %+v", res)
		}
		// The same condition fails a sync as a configuration error.
		_, err = h.sync(ref, 1)
		if ae := appError(t, err); ae.Type() != activities.ErrTypeConfig || !ae.NonRetryable() {
			t.Fatalf("%v", err)
		}
	})
}
