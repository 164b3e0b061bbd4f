// Package evidence is the compliance core of jiraconnect: what a Jira sync proves, how each piece of
// evidence is fingerprinted, which controls it supports and how control coverage is computed.
//
// Everything here is pure: no I/O, no clocks, no package-level mutable state. Activities call
// [BuildItems] on the raw results of a sync and write the returned items (with their
// [Fingerprint]) to Postgres; the API calls [ComputeCoverage] over the freshest observations; the
// ConnectionWorkflow uses [StaleDeadline] and [IsStale] to drive its stale timer. Keeping the rules
// in one pure package means the workflow, the activities and the API cannot disagree about what
// "fresh", "empty" or "covered" mean, and auditors can read the rules in one place.
//
// Two principles run through the package:
//
//   - An empty or partial fetch is "no data", never "compliant". A part of a sync that failed
//     produces no evidence; a part that succeeded but returned nothing (zero projects, zero tickets,
//     an empty sample) produces an item that is recorded but does not count as compliance evidence.
//   - Evidence is immutable and content-addressed. The fingerprint covers what was observed, not
//     when or how it was fetched, so the same content seen on two days is one evidence row with two
//     observations, and any change to the content is a new row.
package evidence
