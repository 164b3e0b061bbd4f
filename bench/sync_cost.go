package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// syncCost measures what one evidence sync costs as the Jira site grows: the number of Jira calls
// (the product promises the same calls whatever the size: 12 with the default configuration, 4
// for the project inventory, ticket volume and resolved-ticket sample and 8 for the security
// remediation) and the wall time of the sync.
// It runs the worker's own SyncEvidence activity code, called directly (outside Temporal, as the
// API does for RevokeCleanup), against a fresh Postgres database and one seeded simulator per
// site size.
type syncCost struct {
	sizes   string
	flavors string
	repeat  int
}

func newSyncCost() *syncCost {
	return &syncCost{sizes: "10x1000,1000x100000,10000x1000000", flavors: "cloud,datacenter", repeat: 7}
}

func (*syncCost) Name() string  { return "sync-cost" }
func (*syncCost) Title() string { return "Sync cost against site size" }

func (s *syncCost) Flags(fs *flag.FlagSet) {
	fs.StringVar(&s.sizes, "sync-cost.sizes", s.sizes,
		"comma-separated site sizes as <projects>x<issues>; the wall-time ratio compares the largest with the smallest")
	fs.StringVar(&s.flavors, "sync-cost.flavors", s.flavors, "comma-separated simulator flavors to measure: cloud, datacenter")
	fs.IntVar(&s.repeat, "sync-cost.repeat", s.repeat,
		"timed syncs per site size (after one untimed warm-up sync); the median is reported")
}

func (s *syncCost) Quick() {
	s.sizes = "10x1000,100x10000"
	s.repeat = 3
}

// syncSite is one simulated site.
type syncSite struct{ projects, issues int }

func (z syncSite) String() string { return fmt.Sprintf("%dx%d", z.projects, z.issues) }

func parseSyncSizes(spec string) ([]syncSite, error) {
	var out []syncSite
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, i, ok := strings.Cut(part, "x")
		projects, err1 := strconv.Atoi(strings.TrimSpace(p))
		issues, err2 := strconv.Atoi(strings.TrimSpace(i))
		if !ok || err1 != nil || err2 != nil || projects < 1 || issues < 0 {
			return nil, fmt.Errorf("-sync-cost.sizes: %q is not <projects>x<issues>", part)
		}
		out = append(out, syncSite{projects, issues})
	}
	if len(out) == 0 {
		return nil, errors.New("-sync-cost.sizes: no size given")
	}
	return out, nil
}

func parseSyncFlavors(spec string) ([]jirasim.Flavor, error) {
	var out []jirasim.Flavor
	for _, part := range strings.Split(spec, ",") {
		switch f := jirasim.Flavor(strings.TrimSpace(part)); f {
		case jirasim.Cloud, jirasim.DataCenter:
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		case "":
		default:
			return nil, fmt.Errorf("-sync-cost.flavors: unknown flavor %q (cloud, datacenter)", part)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-sync-cost.flavors: no flavor given")
	}
	return out, nil
}

func (s *syncCost) Run(ctx context.Context, b *Bench, r *Result) error {
	sizes, err := parseSyncSizes(s.sizes)
	if err != nil {
		return err
	}
	flavors, err := parseSyncFlavors(s.flavors)
	if err != nil {
		return err
	}
	if s.repeat < 1 {
		return errors.New("-sync-cost.repeat must be at least 1")
	}
	r.Parameters["sizes"] = s.sizes
	r.Parameters["flavors"] = s.flavors
	r.Parameters["repeat"] = s.repeat

	// Postgres, sealing and the activities exactly as the worker builds them; no Temporal is
	// needed because the activity is called directly. The stack's own simulator is not used:
	// each size gets its own seeded one below.
	st, err := StartStack(ctx, b, StackOptions{})
	if err != nil {
		return err
	}
	defer st.Close()
	org, _, err := st.Core.Tenancy.CreateOrg(ctx, "sync-cost", audit.Actor{Type: audit.ActorCLI, ID: "bench"})
	if err != nil {
		return fmt.Errorf("create org: %w", err)
	}

	r.Note("Each size is its own simulator seeded with jirasim Seed (20%% security issues, half of the done ones resolved in the last 30 days, so that even the smallest site fills the 25-ticket sample and every size stores the same evidence) and its own token/PAT connection with the default configuration (sample size 25).")
	r.Note("A sync is activities.SyncEvidence called directly with the worker's activities (app.Core), against a fresh Postgres database: Jira calls, then one transaction storing evidence and observations. One untimed warm-up sync per size first (it writes the evidence rows; later syncs observe them, as a daily sync of an unchanged site does); then %d timed syncs per size, interleaved round-robin across sizes so that load from other processes hits every size alike.", s.repeat)
	r.Note("With the default configuration a sync makes 12 calls: project count, total and open counts and one resolved-ticket page (4), then the security remediation: the count of security tickets resolved in the 90-day window, one page of the most recently resolved of them, one open-past-SLA count for each of the five default priorities and the oldest open ticket (8). Every site size makes the same ones.")
	r.Note("Calls are the REST requests the simulator served during the sync (OAuth token traffic excluded), checked against the activity's own count (jira.CallStats); 'sim time' is the simulator's summed request handling time, Jira's own share of the wall time (transfer and client-side decoding excluded).")
	r.Note("Ratio = median wall time at the largest size / median at the smallest size (target ≤ 1.5). Data Center has no paged project count, so its project-count call (GET /rest/api/2/project) returns every project: that response grows with the project count. Its searches (POST /rest/api/2/search) always compute the match total, also for the sample page.")

	small, large := 0, 0
	for i, z := range sizes {
		if z.issues < sizes[small].issues || (z.issues == sizes[small].issues && z.projects < sizes[small].projects) {
			small = i
		}
		if z.issues > sizes[large].issues || (z.issues == sizes[large].issues && z.projects > sizes[large].projects) {
			large = i
		}
	}

	for _, flavor := range flavors {
		if err := s.measureFlavor(ctx, b, r, st, org.ID, flavor, sizes, small, large); err != nil {
			return fmt.Errorf("%s: %w", flavor, err)
		}
	}
	return nil
}

// syncSiteRun is one seeded site with its connection and measurements.
type syncSiteRun struct {
	size    syncSite
	srv     *jirasim.Server
	ref     activities.ConnectionRef
	wall    []time.Duration
	simTime []time.Duration
	calls   []int
	// opTime sums the simulator's handling time per operation over the timed syncs.
	opTime map[string]time.Duration
	// observed is the evidence items of the last sync (4 + the sample's tickets).
	observed int
}

func (s *syncCost) measureFlavor(ctx context.Context, b *Bench, r *Result, st *Stack, orgID uuid.UUID, flavor jirasim.Flavor, sizes []syncSite, small, large int) error {
	runs := make([]*syncSiteRun, len(sizes))
	defer func() {
		for _, sr := range runs {
			if sr != nil {
				sr.srv.Close()
			}
		}
	}()
	for i, z := range sizes {
		start := time.Now()
		srv := jirasim.NewServer(jirasim.Options{Flavor: flavor, Logger: b.Quiet, RandSeed: 1})
		runs[i] = &syncSiteRun{size: z, srv: srv, opTime: map[string]time.Duration{}}
		if _, err := srv.Seed(7, jirasim.SeedSpec{Projects: z.projects, Issues: z.issues, SecurityShare: 0.2, ResolvedRecentShare: 0.5}); err != nil {
			return fmt.Errorf("seed %s: %w", z, err)
		}
		ref, err := createSyncConnection(ctx, st, orgID, srv)
		if err != nil {
			return err
		}
		runs[i].ref = ref
		b.Log.Info("sync-cost: site seeded", "flavor", flavor, "size", z.String(), "seconds", fmt.Sprintf("%.1f", time.Since(start).Seconds()))
	}

	seq := int64(0)
	syncOnce := func(sr *syncSiteRun, timed bool) error {
		seq++
		in := activities.SyncInput{ConnectionRef: sr.ref, Seq: seq, Trigger: "schedule",
			WorkflowID: workflows.WorkflowID(sr.ref.ConnectionID), RunID: "bench"}
		sr.srv.ResetRequests()
		t0 := time.Now()
		res, err := st.Core.Activities.SyncEvidence(ctx, in)
		wall := time.Since(t0)
		if err != nil {
			return fmt.Errorf("sync of %s: %w", sr.size, err)
		}
		if res.Outcome != activities.OutcomeSuccess {
			return fmt.Errorf("sync of %s: outcome %s, want success (the seeded site has data for every evidence type)", sr.size, res.Outcome)
		}
		calls, simTime := 0, time.Duration(0)
		reqs := sr.srv.Requests()
		for _, req := range reqs {
			if !strings.HasPrefix(req.Operation, "oauth.") {
				calls++
				simTime += req.Duration
			}
		}
		if calls != res.JiraCalls {
			return fmt.Errorf("sync of %s: the activity counted %d Jira calls, the simulator served %d", sr.size, res.JiraCalls, calls)
		}
		sr.observed = res.Observed
		if timed {
			sr.wall = append(sr.wall, wall)
			sr.simTime = append(sr.simTime, simTime)
			sr.calls = append(sr.calls, calls)
			for _, req := range reqs {
				sr.opTime[req.Operation] += req.Duration
			}
		}
		return nil
	}
	for _, sr := range runs {
		if err := syncOnce(sr, false); err != nil {
			return err
		}
	}
	for range s.repeat {
		for _, sr := range runs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := syncOnce(sr, true); err != nil {
				return err
			}
		}
	}

	minCalls, maxCalls := runs[0].calls[0], runs[0].calls[0]
	for _, sr := range runs {
		lo, hi := slices.Min(sr.calls), slices.Max(sr.calls)
		minCalls, maxCalls = min(minCalls, lo), max(maxCalls, hi)
		callsFig := float64(hi)
		if lo != hi {
			r.Note("%s %s: the number of calls varied between syncs (%d to %d); the table shows the maximum.", flavor, sr.size, lo, hi)
		}
		if sr.observed != runs[0].observed {
			r.Note("%s %s: a sync observed %d evidence items, the first size %d; the Postgres part of the syncs differs.", flavor, sr.size, sr.observed, runs[0].observed)
		}
		r.Add(fmt.Sprintf("%s %s calls per sync", flavor, sr.size), callsFig, "calls")
		r.Add(fmt.Sprintf("%s %s median wall time", flavor, sr.size), ms(percentile(sr.wall, 50)), "ms")
		r.Add(fmt.Sprintf("%s %s median sim time", flavor, sr.size), ms(percentile(sr.simTime, 50)), "ms")
		b.Log.Info("sync-cost: measured", "flavor", flavor, "size", sr.size.String(), "calls", hi,
			"wall_p50_ms", fmt.Sprintf("%.1f", ms(percentile(sr.wall, 50))), "sim_p50_ms", fmt.Sprintf("%.1f", ms(percentile(sr.simTime, 50))))
	}
	// Where the largest site's Jira time goes, per operation (mean per sync).
	big := runs[large]
	ops := make([]string, 0, len(big.opTime))
	for op := range big.opTime {
		ops = append(ops, op)
	}
	slices.SortFunc(ops, func(a, b string) int { return int(big.opTime[b] - big.opTime[a]) })
	parts := make([]string, 0, len(ops))
	for _, op := range ops {
		parts = append(parts, fmt.Sprintf("%s %.1f ms", op, ms(big.opTime[op])/float64(len(big.wall))))
	}
	r.Note("%s %s: simulator time per sync by operation (mean): %s.", flavor, big.size, strings.Join(parts, ", "))
	r.AtMost(fmt.Sprintf("%s call spread across sizes (max − min)", flavor), float64(maxCalls-minCalls), "calls", 0)
	if small != large {
		ratio := float64(percentile(runs[large].wall, 50)) / float64(percentile(runs[small].wall, 50))
		r.AtMost(fmt.Sprintf("%s wall-time ratio %s / %s", flavor, sizes[large], sizes[small]), ratio, "x", 1.5)
	}
	return nil
}

// createSyncConnection stores an active connection of the bench org to srv the way the API does
// after verifying credentials (sealed credentials, default configuration), without starting a
// workflow: the scenario drives the sync activity itself. Cloud sites get an API-token
// connection, Data Center sites a personal-access-token one.
func createSyncConnection(ctx context.Context, st *Stack, orgID uuid.UUID, srv *jirasim.Server) (activities.ConnectionRef, error) {
	creds := connections.Credentials{Kind: connections.KindCloudToken}
	if srv.Flavor() == jirasim.DataCenter {
		creds = connections.Credentials{Kind: connections.KindDataCenterPAT, PAT: jira.NewSecret(srv.PAT("admin"))}
	} else {
		creds.Email, creds.APIToken = "admin@example.com", jira.NewSecret(srv.APIToken("admin@example.com"))
	}
	id := uuid.New()
	sealed, err := connections.SealCredentials(ctx, st.Core.Sealer, orgID, id, creds)
	if err != nil {
		return activities.ConnectionRef{}, fmt.Errorf("seal credentials: %w", err)
	}
	cfg, err := json.Marshal(connections.DefaultConfig())
	if err != nil {
		return activities.ConnectionRef{}, err
	}
	err = st.Core.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		_, err := q.CreateConnection(ctx, dbq.CreateConnectionParams{
			ID: id, OrgID: orgID, Kind: string(creds.Kind), SiteUrl: srv.URL, Status: string(connections.StatusActive),
			Config: cfg, Scopes: []string{}, SealedCredentials: sealed, WorkflowID: workflows.WorkflowID(id),
		})
		return err
	})
	if err != nil {
		return activities.ConnectionRef{}, fmt.Errorf("create connection: %w", err)
	}
	return activities.ConnectionRef{OrgID: orgID, ConnectionID: id}, nil
}
