package workflows

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/connections"
)

// healthyRun drives the pure machine through cycles syncs of a connection whose every sync
// succeeds, each taking a duration from durations (cycled), and reports whether it ever went
// stale and how many syncs finished.
func healthyRun(t *testing.T, conn uuid.UUID, cadence, threshold time.Duration, floor bool, cycles int, durations func(i int) time.Duration) (stale bool, syncs int) {
	t.Helper()
	s := NewState(testOrg, conn, nil)
	s.StaleFloor = floor
	now := t0
	var cmds []Command
	feed := func(ev Event) {
		s, cmds = Step(s, ev, now)
		for _, c := range cmds {
			switch c := c.(type) {
			case CmdOpenAlert:
				if c.Kind == activities.AlertKindStale {
					stale = true
				}
			case CmdMirror:
				if c.Update.Action == ActionStale {
					stale = true
				}
			}
		}
	}
	feed(Started{})
	feed(Loaded{Snapshot: activities.ConnectionSnapshot{Status: StatusActive, SyncCadence: cadence, StaleThreshold: threshold, CreatedAt: t0}})
	for syncs < cycles && !stale {
		var started *CmdStartSync
		for _, c := range cmds {
			if c, ok := c.(CmdStartSync); ok {
				started = &c
			}
		}
		if started == nil {
			wake := s.Wake()
			if wake.IsZero() {
				t.Fatalf("no sync running and no timer set after %d syncs", syncs)
			}
			now = wake
			feed(TimerFired{})
			continue
		}
		now = now.Add(durations(syncs))
		feed(SyncFinished{Seq: started.Seq, Outcome: OutcomeSuccess})
		syncs++
	}
	return stale, syncs
}

// A healthy connection never goes stale, for every cadence the validator accepts, every
// threshold it accepts (down to the floor), every jitter the scheduler draws, and syncs taking
// anything from an instant to the whole retry budget — the worst case being an instant sync
// followed by one that takes the whole budget.
func TestHealthyConnectionNeverGoesStale(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	cadences := []time.Duration{connections.MinCadence, 30 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour, 3 * 24 * time.Hour, connections.MaxCadence}
	budget := connections.SyncRetryBudget
	patterns := map[string]func(i int) time.Duration{
		"instant then the whole budget": func(i int) time.Duration {
			if i%2 == 0 {
				return 0
			}
			return budget
		},
		"always the whole budget": func(int) time.Duration { return budget },
		"random":                  func(int) time.Duration { return time.Duration(rng.Int64N(int64(budget) + 1)) },
	}
	for _, cadence := range cadences {
		floor := connections.StaleThresholdFloor(cadence)
		for _, threshold := range []time.Duration{floor, floor + time.Minute, floor + cadence} {
			cfg := connections.DefaultConfig()
			cfg.SyncCadence, cfg.StaleThreshold = connections.Duration(cadence), connections.Duration(threshold)
			if err := cfg.Validate(); err != nil {
				t.Fatalf("cadence %s threshold %s: the validator refuses it: %v", cadence, threshold, err)
			}
			for name, durations := range patterns {
				for range 8 { // connection ids draw different jitters
					conn := uuid.New()
					if stale, syncs := healthyRun(t, conn, cadence, threshold, true, 40, durations); stale {
						t.Errorf("cadence %s, threshold %s, %s, connection %s: went stale after %d healthy syncs", cadence, threshold, name, conn, syncs)
					}
				}
			}
		}
	}
}

// The validator refuses a threshold below the floor, and the error says what the floor is made
// of; the machine also raises a stored threshold from before the rule (threshold = cadence, which
// the validator used to accept) to the floor, so such a connection does not cry wolf either.
func TestStaleThresholdBelowTheFloor(t *testing.T) {
	t.Parallel()
	cfg := connections.DefaultConfig()
	cfg.SyncCadence, cfg.StaleThreshold = connections.Duration(time.Hour), connections.Duration(time.Hour)
	err := cfg.Validate()
	if err == nil {
		t.Fatal("a 1h threshold for a 1h cadence is accepted")
	}
	for _, want := range []string{"stale_threshold", "1h28m0s", "3m0s", "25m0s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	worst := func(i int) time.Duration {
		if i%2 == 0 {
			return 0
		}
		return connections.SyncRetryBudget
	}
	if stale, _ := healthyRun(t, testConn, time.Hour, time.Hour, false, 20, worst); !stale {
		t.Error("control: without the floor a 1h threshold on a 1h cadence must go stale for a slow healthy sync (the property test could not fail)")
	}
	if stale, syncs := healthyRun(t, testConn, time.Hour, time.Hour, true, 40, worst); stale {
		t.Errorf("a stored 1h/1h configuration went stale after %d healthy syncs although the floor applies", syncs)
	}
}

// The retry budget of the schedule rule covers the sync activity's whole retry policy: every
// attempt at its full start-to-close timeout plus the backoffs between them.
func TestSyncRetryBudgetCoversTheRetryPolicy(t *testing.T) {
	t.Parallel()
	o := syncOptions()
	p := o.RetryPolicy
	if p == nil || p.MaximumAttempts <= 0 {
		t.Fatal("the sync's retry policy must bound its attempts for the schedule rule to hold")
	}
	worst := time.Duration(p.MaximumAttempts) * o.StartToCloseTimeout
	backoff := p.InitialInterval
	for range p.MaximumAttempts - 1 {
		worst += backoff
		backoff = min(time.Duration(float64(backoff)*p.BackoffCoefficient), p.MaximumInterval)
	}
	if worst > connections.SyncRetryBudget {
		t.Errorf("a sync with all its retries may take %s, more than connections.SyncRetryBudget (%s)", worst, connections.SyncRetryBudget)
	}
}

// End to end on the real SDK with time skipping: a connection with a one-hour cadence and the
// smallest threshold the validator accepts, against a healthy Jira that answers one sync at once
// and the next only after the whole retry budget, runs eight cycles without ever going stale.
func TestHealthyConnectionNeverGoesStaleOverCycles(t *testing.T) {
	w := newWorld(t)
	w.snap.SyncCadence, w.snap.StaleThreshold = time.Hour, connections.StaleThresholdFloor(time.Hour)
	w.syncDelay = func(seq int64) time.Duration {
		if seq%2 == 1 {
			return 0
		}
		return connections.SyncRetryBudget
	}
	w.cancelAt(9 * time.Hour)
	w.start(ConnectionInput{})

	if n := len(w.syncsOf(8)); n != 1 {
		t.Fatalf("eight cycles did not run in nine hours: %d attempts in all", len(w.attempts))
	}
	if len(w.opened) != 0 || w.actions(ActionStale) != 0 {
		t.Errorf("a healthy connection went stale: alerts opened at %v, %d connection.stale actions", w.opened, w.actions(ActionStale))
	}
}
