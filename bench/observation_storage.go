package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// observationStorage measures what the record of continuous monitoring costs per connection and
// year: a year of daily syncs (the worker's SyncEvidence, called directly under a clock that moves
// a day per sync), stored as observation spans, beside what the per-sync observation rows that
// spans replaced would have taken for the same observations (the same rows inserted into a table
// of the old shape, with its primary key and indexes).
type observationStorage struct{ days int }

func newObservationStorage() *observationStorage { return &observationStorage{days: 365} }

func (*observationStorage) Name() string { return "observation-storage" }
func (*observationStorage) Title() string {
	return "Evidence observation storage per connection-year (spans vs. a row per sync)"
}

func (s *observationStorage) Flags(fs *flag.FlagSet) {
	fs.IntVar(&s.days, "observation-storage.days", s.days, "daily syncs to run (365: a connection-year)")
}

func (s *observationStorage) Quick() { s.days = 30 }

func (s *observationStorage) Run(ctx context.Context, b *Bench, r *Result) error {
	if s.days < 2 {
		return errors.New("-observation-storage.days must be at least 2")
	}
	r.Parameters["days"] = s.days
	r.Note("One Cloud site seeded with 20 projects and 2,000 issues (20%% security, half of the done ones resolved in the last 30 days); one token connection with the default configuration (sample of 25 tickets resolved in the last 30 days). Each day the simulator's clock and the activity's clock move 24 h and one newly resolved security ticket is added, so the sample changes every day as real ones do (tickets enter and leave the 30-day window), and the project and ticket counts drift.")
	r.Note("'spans' is what is stored: evidence_observation_spans rows and pg_total_relation_size of that table (heap, TOAST, primary key and indexes) after the year, in a fresh database holding only this connection. 'one row per sync' is the same observations as rows of the table spans replaced (evidence_observations: primary key (evidence_id, run_id), an index on run_id and one on (evidence_id, observed_at)), inserted into a table of that shape in the same database.")

	st, err := StartStack(ctx, b, StackOptions{Seed: jirasim.SeedSpec{Projects: 20, Issues: 2000, SecurityShare: 0.2, ResolvedRecentShare: 0.5}})
	if err != nil {
		return err
	}
	defer st.Close()
	org, _, err := st.Core.Tenancy.CreateOrg(ctx, "observation-storage", audit.Actor{Type: audit.ActorCLI, ID: "bench"})
	if err != nil {
		return fmt.Errorf("create org: %w", err)
	}
	ref, err := createSyncConnection(ctx, st, org.ID, st.Sim)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	now := st.Sim.Now()
	acts, err := activities.New(activities.Deps{DB: st.Core.DB, Connections: st.Core.Connections, Log: b.Quiet, Version: "bench",
		Registerer: prometheus.NewRegistry(), Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	if err != nil {
		return err
	}
	observations := 0
	for day := 1; day <= s.days; day++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if day > 1 {
			mu.Lock()
			now = now.Add(24 * time.Hour)
			mu.Unlock()
			st.Sim.AdvanceClock(24 * time.Hour)
			if _, err := st.Sim.AddIssue(jirasim.IssueSpec{Project: "SEC", IssueType: "Bug", Summary: fmt.Sprintf("Fix finding %d", day),
				Labels: []string{"security"}, Status: "Done", Resolution: "Done", Priority: "High",
				Created: now.Add(-48 * time.Hour), Resolved: now.Add(-time.Hour), Silent: true}); err != nil {
				return fmt.Errorf("add day %d's ticket: %w", day, err)
			}
		}
		res, err := acts.SyncEvidence(ctx, activities.SyncInput{ConnectionRef: ref, Seq: int64(day), Trigger: "schedule",
			WorkflowID: workflows.WorkflowID(ref.ConnectionID), RunID: "bench"})
		if err != nil {
			return fmt.Errorf("sync of day %d: %w", day, err)
		}
		observations += res.Observed
	}

	owner, err := pgxpool.New(ctx, st.DB.OwnerURL)
	if err != nil {
		return fmt.Errorf("connect as the owner: %w", err)
	}
	defer owner.Close()
	var spans, spanBytes int64
	if err := owner.QueryRow(ctx, `SELECT (SELECT count(*) FROM evidence_observation_spans),
		pg_total_relation_size('evidence_observation_spans')`).Scan(&spans, &spanBytes); err != nil {
		return fmt.Errorf("measure spans: %w", err)
	}
	// The old shape, filled with as many rows as there were observations.
	if _, err := owner.Exec(ctx, `CREATE TABLE bench_observations_per_sync (
			org_id uuid NOT NULL, evidence_id uuid NOT NULL, run_id uuid NOT NULL, observed_at timestamptz NOT NULL,
			counts_as_evidence boolean NOT NULL, PRIMARY KEY (evidence_id, run_id));
		CREATE INDEX ON bench_observations_per_sync (run_id);
		CREATE INDEX ON bench_observations_per_sync (evidence_id, observed_at DESC);`); err != nil {
		return fmt.Errorf("create the per-sync table: %w", err)
	}
	if _, err := owner.Exec(ctx, `INSERT INTO bench_observations_per_sync
		SELECT $1, gen_random_uuid(), gen_random_uuid(), now() - make_interval(days => i % 365), true FROM generate_series(1, $2) i`,
		org.ID, observations); err != nil {
		return fmt.Errorf("fill the per-sync table: %w", err)
	}
	var rowBytes int64
	if err := owner.QueryRow(ctx, `SELECT pg_total_relation_size('bench_observations_per_sync')`).Scan(&rowBytes); err != nil {
		return fmt.Errorf("measure the per-sync table: %w", err)
	}
	scale := 365 / float64(s.days)
	r.Add("syncs", float64(s.days), "syncs")
	r.Add("observations recorded", float64(observations), "observations")
	r.Add("one row per sync: rows per connection-year", float64(observations)*scale, "rows")
	r.Add("one row per sync: storage per connection-year", float64(rowBytes)*scale/1024, "KiB")
	r.Add("spans: rows per connection-year", float64(spans)*scale, "rows")
	r.Add("spans: storage per connection-year", float64(spanBytes)*scale/1024, "KiB")
	r.Add("storage ratio (one row per sync / spans)", float64(rowBytes)/float64(spanBytes), "x")
	if s.days != 365 {
		r.Note("Ran %d days; the per-year figures are scaled by 365/%d.", s.days, s.days)
	}
	return nil
}
