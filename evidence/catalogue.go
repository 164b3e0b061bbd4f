package evidence

import (
	"fmt"
	"slices"
	"strconv"
)

// Framework names a compliance framework as it is shown to users and auditors.
type Framework string

const (
	// FrameworkSOC2 is the AICPA Trust Services Criteria (2017, revised points of focus 2022)
	// used for SOC 2 reports.
	FrameworkSOC2 Framework = "SOC 2"
	// FrameworkISO27001 is ISO/IEC 27001:2022, whose Annex A controls are numbered as in
	// ISO/IEC 27002:2022.
	FrameworkISO27001 Framework = "ISO/IEC 27001:2022"
)

// Control is one control that Jira evidence can support. ID is stable and stored (the controls
// table and assessments refer to it), so it never changes once published; Reference and Title
// are the framework's own numbering and a short name. A control is covered only when every type
// in Requires has fresh evidence. Rationale explains, for the auditor reading the coverage report,
// why this evidence is relevant to this control and what it does not show.
type Control struct {
	ID        string    `json:"id"`
	Framework Framework `json:"framework"`
	Reference string    `json:"reference"`
	Title     string    `json:"title"`
	Requires  []Type    `json:"requires"`
	Rationale string    `json:"rationale"`
}

// Catalogue returns the controls that Jira evidence supports. Each call returns a fresh copy, so
// callers may modify the result without affecting anyone else.
//
// Jira evidence supports these controls; it does not by itself satisfy them. Coverage means "the
// operating evidence an auditor expects from the ticketing system is present and fresh", and the
// rationales say so.
func Catalogue() []Control {
	changeTracking := []Type{TypeProjectInventory, TypeTicketVolume}
	securitySample := []Type{TypeSecurityTicketSample, TypeResolvedSecurityTicket}
	// Remediation adds how well the response performs: resolutions over a rolling window, time
	// to resolve per priority against its SLA, tickets open past their SLA, the oldest open one.
	remediation := []Type{TypeSecurityTicketSample, TypeResolvedSecurityTicket, TypeSecurityRemediation}
	remediationLimits := " The remediation figures cover only the tickets the configured JQL selects; " +
		"their times to resolve come from at most the " + strconv.Itoa(RemediationSampleSize) + " most recently resolved tickets of the window (the " +
		"evidence says how many, and whether that was all), and on Jira Cloud the counts are Jira's estimates " +
		"(marked approximate in the provenance). They do not show that the SLAs themselves are appropriate."
	return []Control{
		{
			ID: "soc2.cc8.1", Framework: FrameworkSOC2, Reference: "CC8.1",
			Title:    "Change management: changes are authorised, tested, approved and implemented",
			Requires: slices.Clone(changeTracking),
			Rationale: "Changes are requested and tracked as Jira tickets. The project inventory shows the " +
				"scope of the tracking system and the total and open ticket counts, each with its JQL, show " +
				"that work is recorded and tracked to closure. It does not show that each change was tested " +
				"or approved; that needs the change records themselves.",
		},
		{
			ID: "soc2.cc7.1", Framework: FrameworkSOC2, Reference: "CC7.1",
			Title:    "Detection and monitoring of configuration changes and new vulnerabilities",
			Requires: slices.Clone(securitySample),
			Rationale: "A sample of recently resolved security tickets, drawn by a recorded JQL over a recorded " +
				"window, shows that detected vulnerabilities are raised as tickets with a priority and an " +
				"owner and are resolved. An empty sample proves nothing and does not count.",
		},
		{
			ID: "soc2.cc7.2", Framework: FrameworkSOC2, Reference: "CC7.2",
			Title:    "Monitoring of system components for anomalies indicative of security events",
			Requires: slices.Clone(securitySample),
			Rationale: "Resolved security tickets show that anomalies and security events found by monitoring " +
				"are captured in the ticketing system rather than handled informally. The monitoring " +
				"tooling itself is evidenced elsewhere.",
		},
		{
			ID: "soc2.cc7.3", Framework: FrameworkSOC2, Reference: "CC7.3",
			Title:    "Evaluation of security events to determine whether they are incidents",
			Requires: slices.Clone(securitySample),
			Rationale: "Each sampled ticket carries the priority assigned on triage and a resolution, which " +
				"record that the event was evaluated and a decision was taken.",
		},
		{
			ID: "soc2.cc7.4", Framework: FrameworkSOC2, Reference: "CC7.4",
			Title:    "Response to identified security incidents",
			Requires: slices.Clone(remediation),
			Rationale: "Each sampled ticket records who handled it (assignee), how it ended (resolution) and " +
				"when (resolved time), which shows the response was carried out and closed. The security " +
				"remediation figures show how promptly: tickets resolved over a rolling window, the median and " +
				"90th-percentile time to resolve per priority against the configured SLA, the tickets still open " +
				"past their SLA and the oldest open one." + remediationLimits,
		},
		{
			ID: "iso27001-2022.a.8.32", Framework: FrameworkISO27001, Reference: "A.8.32",
			Title:    "Change management",
			Requires: slices.Clone(changeTracking),
			Rationale: "Changes to information processing facilities are tracked as Jira tickets: the project " +
				"inventory shows the scope of the tracking system and the ticket counts (with their JQL) " +
				"show that changes are recorded and followed to closure. Approval and testing of each " +
				"change need the change records themselves.",
		},
		{
			ID: "iso27001-2022.a.8.8", Framework: FrameworkISO27001, Reference: "A.8.8",
			Title:    "Management of technical vulnerabilities",
			Requires: slices.Clone(remediation),
			Rationale: "Resolved security tickets, sampled by a recorded JQL and window, show that technical " +
				"vulnerabilities are recorded, prioritised, assigned and remediated. The security remediation " +
				"figures show that remediation is timely and measured against targets: the median and " +
				"90th-percentile time to resolve per priority against its SLA, how many tickets of each priority " +
				"are open past their SLA, and the oldest open ticket. An empty sample, or remediation figures " +
				"with no security ticket resolved or open, do not count." + remediationLimits,
		},
		{
			ID: "iso27001-2022.a.5.24", Framework: FrameworkISO27001, Reference: "A.5.24",
			Title:    "Information security incident management planning and preparation",
			Requires: []Type{TypeProjectInventory, TypeSecurityTicketSample, TypeResolvedSecurityTicket},
			Rationale: "Preparation is shown by an established tracking system (project inventory) that is " +
				"actually used for security events (a non-empty sample of resolved security tickets with " +
				"owners). The written incident management plan is evidenced elsewhere.",
		},
		{
			ID: "iso27001-2022.a.5.25", Framework: FrameworkISO27001, Reference: "A.5.25",
			Title:    "Assessment and decision on information security events",
			Requires: slices.Clone(securitySample),
			Rationale: "The priority and resolution of each sampled security ticket record the assessment of " +
				"the event and the decision taken on it.",
		},
		{
			ID: "iso27001-2022.a.5.26", Framework: FrameworkISO27001, Reference: "A.5.26",
			Title:    "Response to information security incidents",
			Requires: slices.Clone(remediation),
			Rationale: "The assignee, resolution and resolved time of each sampled security ticket show that " +
				"incidents were responded to and closed; the security remediation figures show how quickly, " +
				"per priority against the configured SLA, and which tickets are still open past it." + remediationLimits,
		},
	}
}

// ValidateCatalogue checks a catalogue's integrity: ids present, well-formed and unique; framework,
// reference, title and rationale present; at least one required type, each known and listed once.
// ComputeCoverage calls it, because a control that requires nothing would be "covered" vacuously.
func ValidateCatalogue(controls []Control) error {
	var v validator
	seen := make(map[string]int, len(controls))
	for i, c := range controls {
		f := fmt.Sprintf("catalogue[%d]", i)
		if !isControlID(c.ID) {
			v.add(f+".id", "%q is not a control id (lower-case letters, digits, '.', '-')", c.ID)
		}
		if j, dup := seen[c.ID]; dup {
			v.add(f+".id", "duplicate id %q (also at index %d)", c.ID, j)
		} else {
			seen[c.ID] = i
		}
		v.text(f+".framework", string(c.Framework), true)
		v.text(f+".reference", c.Reference, true)
		v.text(f+".title", c.Title, true)
		v.text(f+".rationale", c.Rationale, true)
		if len(c.Requires) == 0 {
			v.add(f+".requires", "is empty")
		}
		for k, t := range c.Requires {
			if !t.Valid() {
				v.add(fmt.Sprintf("%s.requires[%d]", f, k), "unknown evidence type %q", t)
			}
			if slices.Index(c.Requires, t) != k {
				v.add(fmt.Sprintf("%s.requires[%d]", f, k), "type %q listed twice", t)
			}
		}
	}
	return v.err()
}

func isControlID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
