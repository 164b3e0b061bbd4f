package findingsync

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReconcileWindow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		since time.Time
		want  string
	}{
		// The window reaches back to since less the overlap, in whole minutes, at least one.
		{now.Add(-time.Hour), `(project = "SEC") AND (updated >= -65m) ORDER BY updated ASC, id ASC`},
		{now.Add(-90 * time.Second), `(project = "SEC") AND (updated >= -7m) ORDER BY updated ASC, id ASC`},
		{now.Add(10 * time.Minute), `(project = "SEC") AND (updated >= -1m) ORDER BY updated ASC, id ASC`},
	} {
		q, err := reconcileQuery("SEC", tc.since, now)
		require.NoError(t, err)
		assert.Equal(t, tc.want, q, "since %s", tc.since)
	}
}

func TestReconcileContinuesAfterATruncatedPass(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	// The next window begins at the last issue seen (the mark less the overlap).
	next, ok := continueFrom(since, since.Add(30*time.Minute))
	assert.True(t, ok)
	assert.Equal(t, since.Add(30*time.Minute+reconcileOverlap), next)
	// A window that would not move forward by a minute is given up on.
	_, ok = continueFrom(since, since.Add(-reconcileOverlap+30*time.Second))
	assert.False(t, ok)
	_, ok = continueFrom(since, time.Time{})
	assert.False(t, ok, "no issue seen")
}
