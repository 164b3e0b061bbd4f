package activities

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/evidence"
	"github.com/jiraconnect/jiraconnect/failure"
)

func TestSampleWindow(t *testing.T) {
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		jql  string
		want time.Duration
	}{
		{connections.DefaultResolvedJQL, 30 * 24 * time.Hour},
		{`labels = security AND resolved >= -4w`, 28 * 24 * time.Hour},
		{`resolutiondate > "-12h" AND project = SEC`, 12 * time.Hour},
		{`RESOLVED>=-7d`, 7 * 24 * time.Hour},
		{`resolved >= -90m`, 90 * time.Minute},
		{`resolved >= "-4w 2d"`, unboundedLookback}, // combined offsets are not interpreted
		{`resolved >= -3M`, unboundedLookback},      // not a unit Jira documents as minutes
		{`resolved >= "2026-01-01"`, unboundedLookback},
		{`labels = security AND statusCategory = Done`, unboundedLookback},
		{`resolved >= -0d`, unboundedLookback},
	} {
		from, to := sampleWindow(tc.jql, now)
		if !to.Equal(now) || to.Sub(from) != tc.want {
			t.Errorf("%q: window %s..%s (%s), want length %s", tc.jql, from, to, to.Sub(from), tc.want)
		}
	}
}

// validSync is a complete, valid raw sync result.
func validSync() evidence.SyncResult {
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	hash := digest("x", connections.KindCloudToken, 1)
	return evidence.SyncResult{
		SiteURL: "https://acme.atlassian.net", ConnectorVersion: "v1", CollectedAt: now,
		Projects: evidence.ProjectCountPart{Fetched: true, Count: 3, ResponseSHA256: hash},
		Total:    evidence.TicketCountPart{Fetched: true, JQL: "project is not EMPTY", Count: 10, ResponseSHA256: hash},
		Open:     evidence.TicketCountPart{Fetched: true, JQL: `statusCategory != "Done"`, Count: 4, ResponseSHA256: hash},
		Resolved: evidence.ResolvedSamplePart{Fetched: true, JQL: connections.DefaultResolvedJQL, WindowFrom: now.Add(-30 * 24 * time.Hour),
			WindowTo: now, SampleSize: 25, ResponseSHA256: hash, Tickets: []evidence.Ticket{{
				Key: "SEC-1", Summary: "Fix", Resolution: "Done", Resolved: now.Add(-time.Hour), Link: "https://acme.atlassian.net/browse/SEC-1",
			}}},
		Remediation: evidence.RemediationPart{Fetched: true, JQL: connections.DefaultRemediationJQL, WindowFrom: now.Add(-90 * 24 * time.Hour), WindowTo: now,
			Resolved: evidence.CountResult{JQL: "resolved", Count: 1, ResponseSHA256: hash},
			Sample: evidence.RemediationSample{JQL: "sample", Complete: true, ResponseSHA256: hash, Tickets: []evidence.RemediationTicket{{
				Key: "SEC-1", Priority: "High", Created: now.Add(-48 * time.Hour), Resolved: now.Add(-time.Hour)}}},
			Priorities: []evidence.PriorityPart{{Priority: "High", SLA: 30 * 24 * time.Hour,
				OpenPastSLA: evidence.CountResult{JQL: "past", Count: 0, ResponseSHA256: hash}}},
			Oldest: evidence.OldestOpenResult{JQL: "oldest", ResponseSHA256: hash},
		},
	}
}

func typeOutcomes(r evidence.Report) map[evidence.Type]evidence.Outcome {
	m := map[evidence.Type]evidence.Outcome{}
	for _, t := range r.Types {
		m[t.Type] = t.Outcome
	}
	return m
}

func TestBuildItemsFailsOnlyTheInvalidPart(t *testing.T) {
	items, report, err := buildItems(validSync())
	if err != nil || report.Outcome != evidence.OutcomeComplete || len(items) != 5 {
		t.Fatalf("valid input: %d items, %+v, %v", len(items), report, err)
	}

	// Open above total (an inconsistent approximate count) costs the ticket volume only.
	in := validSync()
	in.Open.Count = 11
	items, report, err = buildItems(in)
	if err != nil || report.Outcome != evidence.OutcomePartial || len(items) != 4 {
		t.Fatalf("open > total: %d items, %+v, %v", len(items), report, err)
	}
	if o := typeOutcomes(report); o[evidence.TypeTicketVolume] != evidence.OutcomeNoData || o[evidence.TypeProjectInventory] != evidence.OutcomeComplete ||
		o[evidence.TypeResolvedSecurityTicket] != evidence.OutcomeComplete {
		t.Fatalf("report %+v", report)
	}

	// A ticket without a resolution and with a future date costs the sample only, with a reason.
	in = validSync()
	in.Resolved.Tickets[0].Resolution = ""
	in.Resolved.Tickets = append(in.Resolved.Tickets, evidence.Ticket{Key: "SEC-2", Summary: "x", Resolution: "Done",
		Resolved: in.CollectedAt.Add(time.Hour), Link: "https://acme.atlassian.net/browse/SEC-2"})
	items, report, err = buildItems(in)
	if err != nil || report.Outcome != evidence.OutcomePartial || len(items) != 3 {
		t.Fatalf("bad ticket: %d items, %+v, %v", len(items), report, err)
	}
	for _, tr := range report.Types {
		if tr.Type == evidence.TypeSecurityTicketSample && (tr.Outcome != evidence.OutcomeNoData || !containsAll(tr.Reason, "invalid data from Jira", "resolution", "future")) {
			t.Fatalf("sample report %+v", tr)
		}
	}

	// A remediation ticket resolved before it was created costs the remediation only, with a
	// reason: never figures computed from data Jira got wrong.
	in = validSync()
	in.Remediation.Sample.Tickets[0].Created = in.CollectedAt
	items, report, err = buildItems(in)
	if err != nil || report.Outcome != evidence.OutcomePartial || len(items) != 4 {
		t.Fatalf("bad remediation ticket: %d items, %+v, %v", len(items), report, err)
	}
	for _, it := range items {
		if it.Type == evidence.TypeSecurityRemediation {
			t.Fatal("remediation evidence built from invalid data")
		}
	}
	if o := typeOutcomes(report); o[evidence.TypeSecurityRemediation] != evidence.OutcomeNoData || o[evidence.TypeSecurityTicketSample] != evidence.OutcomeComplete {
		t.Fatalf("report %+v", report)
	}
	for _, tr := range report.Types {
		if tr.Type == evidence.TypeSecurityRemediation && !containsAll(tr.Reason, "invalid data from Jira", "remediation.sample.tickets[0].resolved", "before the ticket was created") {
			t.Fatalf("remediation report %+v", tr)
		}
	}

	// Everything invalid: no items, and the caller fails the attempt.
	in = validSync()
	in.Projects.Count = -1
	in.Total.Count = -1
	in.Resolved.Tickets[0].Key = "not a key"
	in.Remediation.Resolved.Count = -1
	items, report, err = buildItems(in)
	if err != nil || len(items) != 0 || report.Outcome != evidence.OutcomeNoData {
		t.Fatalf("all invalid: %d items, %+v, %v", len(items), report, err)
	}

	// A problem outside the parts is ours (configuration), not Jira's.
	in = validSync()
	in.SiteURL = "ftp://acme"
	if _, _, err := buildItems(in); !errors.Is(err, failure.ErrBadConfig) || failure.Classify(err).Type != failure.TypeConfig {
		t.Fatalf("bad site URL: %v", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestDigest(t *testing.T) {
	a := digest("search.count", connections.KindCloudToken, map[string]any{"jql": "x", "count": 3})
	b := digest("search.count", connections.KindCloudToken, map[string]any{"count": 3, "jql": "x"})
	c := digest("search.count", connections.KindCloudToken, map[string]any{"jql": "x", "count": 4})
	d := digest("search.count", connections.KindDataCenterPAT, map[string]any{"jql": "x", "count": 3})
	if a != b || a == c || a == d || len(a) != 64 {
		t.Fatalf("digests %s %s %s %s", a, b, c, d)
	}
}

func TestRecommendedOptions(t *testing.T) {
	for name, o := range map[string]struct {
		start, heartbeat time.Duration
		nonRetryable     []string
	}{
		"sync":   {SyncOptions().StartToCloseTimeout, SyncOptions().HeartbeatTimeout, SyncOptions().RetryPolicy.NonRetryableErrorTypes},
		"test":   {TestOptions().StartToCloseTimeout, TestOptions().HeartbeatTimeout, TestOptions().RetryPolicy.NonRetryableErrorTypes},
		"revoke": {RevokeOptions().StartToCloseTimeout, RevokeOptions().HeartbeatTimeout, RevokeOptions().RetryPolicy.NonRetryableErrorTypes},
	} {
		if o.heartbeat <= DefaultJiraCallTimeout || o.heartbeat >= o.start {
			t.Errorf("%s: heartbeat timeout %s must exceed one Jira call (%s) and be below StartToClose %s", name, o.heartbeat, DefaultJiraCallTimeout, o.start)
		}
		if !slices.Contains(o.nonRetryable, failure.TypeInvalidInput) {
			t.Errorf("%s: invalid input is retried", name)
		}
	}
	for _, typ := range []string{failure.TypeConfig, failure.TypeReauthRequired, failure.TypeRevoked} {
		if !slices.Contains(SyncOptions().RetryPolicy.NonRetryableErrorTypes, typ) || !slices.Contains(StateOptions().RetryPolicy.NonRetryableErrorTypes, typ) {
			t.Errorf("%s is retried", typ)
		}
	}
	if slices.Contains(SyncOptions().RetryPolicy.NonRetryableErrorTypes, failure.TypeRateLimited) ||
		slices.Contains(SyncOptions().RetryPolicy.NonRetryableErrorTypes, failure.TypeTransient) {
		t.Error("rate limits and transient failures must be retried")
	}
	// A default sync (four calls, then the remediation's three and one per default priority)
	// fits in an attempt even when Jira takes ten seconds per call.
	calls := 4 + 3 + len(connections.DefaultRemediationSLAs())
	if time.Duration(calls)*10*time.Second >= SyncOptions().StartToCloseTimeout {
		t.Errorf("sync StartToClose cannot fit %d Jira calls of 10s", calls)
	}
}
