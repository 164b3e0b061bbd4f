package db_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/connections"
)

// observation is one row of the per-sync observation table the spans migration replaces.
type observation struct {
	evidence uuid.UUID
	at       time.Time
	counts   bool
}

// freshAt is coverage's question for one evidence row at instant t: was it observed, counting as
// evidence, at most within before t?
func freshAt(obs []observation, ev uuid.UUID, t time.Time, within time.Duration) bool {
	for _, o := range obs {
		if o.evidence == ev && o.counts && !o.at.After(t) && t.Sub(o.at) <= within {
			return true
		}
	}
	return false
}

type span struct {
	evidence    uuid.UUID
	first, last time.Time
	counts      bool
	n           int
}

func freshAtSpans(spans []span, ev uuid.UUID, t time.Time, within time.Duration) bool {
	for _, s := range spans {
		if s.evidence == ev && s.counts && !s.first.After(t) && !t.After(s.last.Add(within)) {
			return true
		}
	}
	return false
}

// The spans migration keeps the record of continuous monitoring exactly: for random observation
// histories (daily and irregular syncs, gaps longer than the threshold, evidence that stops and
// starts counting, several connections with different thresholds), every evidence row is fresh at
// exactly the same instants before and after the migration, and no observation is lost from the
// counts.
func TestObservationSpansMigrationKeepsCoverageAtEveryInstant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMigrationDB(t, "spans")
	m.upTo(t, 8)
	conn := m.conn

	rng := rand.New(rand.NewPCG(3, 5))
	org := uuid.New()
	_, err := conn.Exec(ctx, `INSERT INTO organizations (id, name) VALUES ($1, 'spans')`, org)
	require.NoError(t, err)
	t0 := time.Date(2026, 1, 1, 6, 0, 0, 0, time.UTC)
	withinOf := map[uuid.UUID]time.Duration{}
	var all []observation
	var evidenceIDs []uuid.UUID
	for ci, c := range []struct{ cadence, threshold string }{{"24h0m0s", "48h0m0s"}, {"1h0m0s", "1h0m0s"}, {"6h0m0s", "72h0m0s"}} {
		connID := uuid.New()
		cfgJSON := fmt.Sprintf(`{"sync_cadence":%q,"stale_threshold":%q,"resolved_jql":"x","sample_size":25}`, c.cadence, c.threshold)
		_, err := conn.Exec(ctx, `INSERT INTO connections (id, org_id, kind, site_url, workflow_id, config) VALUES ($1, $2, 'cloud_token', 'https://x.atlassian.net', 'wf', $3)`,
			connID, org, cfgJSON)
		require.NoError(t, err)
		cadence, _ := time.ParseDuration(c.cadence)
		threshold, _ := time.ParseDuration(c.threshold)
		conf := connections.Config{SyncCadence: connections.Duration(cadence), StaleThreshold: connections.Duration(threshold)}
		within := conf.EffectiveStaleThreshold()
		// 60 syncs with irregular spacing: mostly the cadence, sometimes a long outage.
		var runs []time.Time
		at := t0
		for range 60 {
			runs = append(runs, at)
			step := cadence + time.Duration(rng.Int64N(int64(cadence/5)+1))
			if rng.IntN(8) == 0 {
				step += within + time.Duration(rng.Int64N(int64(within)))
			}
			at = at.Add(step).Truncate(time.Second) // Postgres keeps microseconds; the boundaries must compare equal
		}
		runIDs := make([]uuid.UUID, len(runs))
		for i, r := range runs {
			runIDs[i] = uuid.New()
			_, err := conn.Exec(ctx, `INSERT INTO connector_runs (id, org_id, connection_id, kind, idempotency_key, workflow_id, run_id, started_at, finished_at, outcome)
				VALUES ($1, $2, $3, 'sync', $4, 'wf', 'r', $5, $5, 'success')`, runIDs[i], org, connID, runIDs[i].String(), r)
			require.NoError(t, err)
		}
		for e := range 4 {
			evID := uuid.New()
			evidenceIDs = append(evidenceIDs, evID)
			withinOf[evID] = within
			_, err := conn.Exec(ctx, `INSERT INTO evidence (id, org_id, connection_id, type, subject, payload, fingerprint, provenance)
				VALUES ($1, $2, $3, 'jira.ticket_volume', $4, '{}', $5, '{}')`, evID, org, connID, fmt.Sprintf("c%d-e%d", ci, e), evID.String())
			require.NoError(t, err)
			counts := true
			for i, r := range runs {
				if rng.IntN(5) == 0 { // this sync did not see the row (its content changed, or the part failed)
					continue
				}
				if rng.IntN(12) == 0 {
					counts = !counts // the row stops (or starts again) counting as evidence
				}
				all = append(all, observation{evidence: evID, at: r, counts: counts})
				_, err := conn.Exec(ctx, `INSERT INTO evidence_observations (org_id, evidence_id, run_id, observed_at, counts_as_evidence) VALUES ($1, $2, $3, $4, $5)`,
					org, evID, runIDs[i], r, counts)
				require.NoError(t, err)
			}
		}
	}

	m.upTo(t, 10)
	rows, err := conn.Query(ctx, `SELECT evidence_id, first_observed_at, last_observed_at, counts_as_evidence, observations FROM evidence_observation_spans`)
	require.NoError(t, err)
	var spans []span
	total := 0
	for rows.Next() {
		var s span
		require.NoError(t, rows.Scan(&s.evidence, &s.first, &s.last, &s.counts, &s.n))
		spans = append(spans, s)
		total += s.n
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, len(all), total, "every observation is counted in exactly one span")
	assert.Less(t, len(spans), len(all)/3, "spans grow with changes, not with syncs")

	checked, disagree := 0, 0
	for _, ev := range evidenceIDs {
		within := withinOf[ev]
		var instants []time.Time
		for _, o := range all {
			if o.evidence == ev {
				instants = append(instants, o.at, o.at.Add(-time.Second), o.at.Add(within), o.at.Add(within+time.Second), o.at.Add(within/2))
			}
		}
		for _, at := range instants {
			checked++
			if before, after := freshAt(all, ev, at, within), freshAtSpans(spans, ev, at, within); before != after {
				disagree++
				if disagree <= 5 {
					t.Errorf("evidence %s at %s: fresh %t before the migration, %t after", ev, at.Format(time.RFC3339), before, after)
				}
			}
		}
	}
	assert.Zero(t, disagree, "of %d instants checked", checked)
	assert.Greater(t, checked, 1000)
}
