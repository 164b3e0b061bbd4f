package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// DATA_KEY_ROTATION_PERIOD defaults to a year, 0 turns scheduled rotation off, and anything else
// must be a duration from a day to ten years; a bad value names the variable.
func TestDataKeyRotationPeriod(t *testing.T) {
	for value, want := range map[string]time.Duration{"": 8760 * time.Hour, "0": 0, "24h": 24 * time.Hour, " 2160h ": 2160 * time.Hour, "87600h": 87600 * time.Hour} {
		c, err := LoadFrom(lookupFrom(map[string]string{"DATA_KEY_ROTATION_PERIOD": value}))
		require.NoError(t, err, value)
		assert.Equal(t, want, c.DataKeyRotationPeriod, value)
	}
	for _, value := range []string{"23h59m", "1s", "-24h", "87601h", "yearly", "0s"} {
		_, err := LoadFrom(lookupFrom(map[string]string{"DATA_KEY_ROTATION_PERIOD": value}))
		require.ErrorContains(t, err, "DATA_KEY_ROTATION_PERIOD", value)
	}
}
