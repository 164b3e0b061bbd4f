package connections

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jiraconnect/jiraconnect/jira/jql"
)

// DefaultRemediationJQL selects the security tickets whose remediation is measured.
const DefaultRemediationJQL = `labels = "security"`

// Limits on the remediation configuration.
const (
	MinRemediationWindowDays = 7
	MaxRemediationWindowDays = 365
	MaxRemediationPriorities = 10
	MaxPriorityNameLength    = 60
	MinRemediationSLA        = time.Hour
	MaxRemediationSLA        = 365 * 24 * time.Hour
)

// RemediationConfig configures the security-remediation evidence of a connection: which tickets
// are security tickets, over which rolling window resolutions are measured, and the time to
// resolve allowed per priority. A sync makes a fixed number of Jira calls for it (three, plus one
// per priority), whatever the site's size.
type RemediationConfig struct {
	// JQL is a filter (no ORDER BY) selecting the security tickets, e.g. labels = "security".
	JQL string `json:"jql"`
	// WindowDays is the rolling window, ending at the sync, whose resolutions are measured.
	WindowDays int `json:"window_days"`
	// SLAs is the time to resolve each priority allows, by Jira priority name (compared without
	// regard to case, as JQL does). Tickets of other priorities count towards the window's
	// resolved total but towards no priority's figures.
	SLAs map[string]Duration `json:"slas"`
}

// DefaultRemediationSLAs are the defaults for Jira's five standard priorities.
func DefaultRemediationSLAs() map[string]Duration {
	const day = 24 * time.Hour
	return map[string]Duration{
		"Highest": Duration(7 * day),
		"High":    Duration(30 * day),
		"Medium":  Duration(90 * day),
		"Low":     Duration(180 * day),
		"Lowest":  Duration(365 * day),
	}
}

// DefaultRemediationConfig returns the documented defaults: security-labelled tickets, a 90-day
// window and DefaultRemediationSLAs.
func DefaultRemediationConfig() RemediationConfig {
	return RemediationConfig{JQL: DefaultRemediationJQL, WindowDays: 90, SLAs: DefaultRemediationSLAs()}
}

// Window is the rolling window as a duration.
func (r RemediationConfig) Window() time.Duration {
	return time.Duration(r.WindowDays) * 24 * time.Hour
}

// Priorities returns the configured priorities ordered by SLA, shortest first, then by name: the
// order evidence lists them in.
func (r RemediationConfig) Priorities() []string {
	names := slices.Collect(maps.Keys(r.SLAs))
	slices.SortFunc(names, func(a, b string) int {
		if c := r.SLAs[a].D() - r.SLAs[b].D(); c != 0 {
			if c < 0 {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return names
}

// validate returns the first problem, naming the field under "remediation".
func (r RemediationConfig) validate() error {
	const f = "remediation"
	switch {
	case strings.TrimSpace(r.JQL) == "":
		return &FieldError{f + ".jql", "must not be empty"}
	case len(r.JQL) > maxJQLLength:
		return &FieldError{f + ".jql", fmt.Sprintf("must be at most %d characters", maxJQLLength)}
	case strings.ContainsAny(r.JQL, "\x00\r\n"):
		return &FieldError{f + ".jql", "must be a single line"}
	}
	if err := jql.Filter(r.JQL).Err(); err != nil {
		return &FieldError{f + ".jql", "must be a JQL filter without ORDER BY: " + strings.TrimPrefix(err.Error(), "jql: ")}
	}
	if r.WindowDays < MinRemediationWindowDays || r.WindowDays > MaxRemediationWindowDays {
		return &FieldError{f + ".window_days", fmt.Sprintf("must be between %d and %d", MinRemediationWindowDays, MaxRemediationWindowDays)}
	}
	if len(r.SLAs) < 1 || len(r.SLAs) > MaxRemediationPriorities {
		return &FieldError{f + ".slas", fmt.Sprintf("must name between 1 and %d priorities", MaxRemediationPriorities)}
	}
	names := slices.Sorted(maps.Keys(r.SLAs))
	seen := make(map[string]string, len(names))
	for _, name := range names {
		if !validPriorityName(name) {
			return &FieldError{f + ".slas", fmt.Sprintf("priority name %q must be 1 to %d characters of single-line text without surrounding spaces",
				name, MaxPriorityNameLength)}
		}
		field := f + ".slas." + name
		if other, dup := seen[strings.ToLower(name)]; dup {
			return &FieldError{field, fmt.Sprintf("names the same priority as %q (Jira compares priority names without regard to case)", other)}
		}
		seen[strings.ToLower(name)] = name
		sla := r.SLAs[name].D()
		switch {
		case sla < MinRemediationSLA || sla > MaxRemediationSLA:
			return &FieldError{field, fmt.Sprintf("must be between %s and %s", MinRemediationSLA, MaxRemediationSLA)}
		case sla%time.Minute != 0:
			return &FieldError{field, "must be a whole number of minutes (Jira's relative dates count minutes)"}
		}
	}
	return nil
}

func validPriorityName(s string) bool {
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > MaxPriorityNameLength || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

// RemediationPatch is a partial update of RemediationConfig; nil fields keep their value. SLAs,
// when present, replaces every priority's SLA: a priority left out is no longer measured.
type RemediationPatch struct {
	JQL        *string             `json:"jql"`
	WindowDays *int                `json:"window_days"`
	SLAs       map[string]Duration `json:"slas"`
}

// apply returns r with the patch applied (not yet validated).
func (p RemediationPatch) apply(r RemediationConfig) RemediationConfig {
	if p.JQL != nil {
		r.JQL = strings.TrimSpace(*p.JQL)
	}
	if p.WindowDays != nil {
		r.WindowDays = *p.WindowDays
	}
	if p.SLAs != nil {
		r.SLAs = maps.Clone(p.SLAs)
	}
	return r
}
