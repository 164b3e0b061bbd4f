// Package faultsuite is jiraconnect's fault-injection suite. It has no production code: its tests
// run the real system as separate processes and break it while it works.
//
// Every test starts its own stack: the production binary's `jiraconnect api` and
// `jiraconnect worker` as two processes, the dev stack's Temporal server as a third
// (`jiraconnect-dev --temporal-only`, persisted to a SQLite file), one or more Jira simulators
// (`jirasim`, driven through their /_sim/ control API) and a fresh Postgres database shared by the
// package (db/dbtest). The API and the worker reach Postgres through TCP proxies inside the test
// process, which can stall or cut every connection without touching the machine's shared Postgres
// server. As in production, they (and `jiraconnect orgs create`) log in as the application role
// and `jiraconnect migrate` as the schema owner. TestMain builds the three binaries once.
//
// What the tests prove, each under its fault:
//
//   - TestWorkerKilledMidSyncAndMidIssueCreation: the worker is SIGKILLed while evidence syncs
//     and issue creations are in flight (with Postgres stalled so that a create Jira committed
//     was never recorded), then restarted: every run completes, no evidence is duplicated, and
//     every finding has exactly one Jira issue.
//   - TestTemporalServerRestartMidRun: the Temporal server is stopped and restarted while syncs
//     and issue creations run: the same workflow runs resume, in-flight work completes, and
//     timers armed before the stop still fire (periodic reconciliation pulls a change made in
//     Jira, with no webhook to carry it).
//   - TestPostgresUnreachableMidRun: every Postgres connection of the API and the worker is cut
//     and new ones refused for a while: both processes report not ready, stay up, recover, and
//     the activities retry and finish with nothing half-written.
//   - TestSimulatorFaultsDuringFleetSync: a fleet of Cloud and Data Center connections syncs
//     while Jira answers 5xx, 429 storms, latency spikes, malformed JSON and lost responses:
//     errors are recorded on the runs, every connection ends consistent and syncs again, exactly
//     one issue per finding, no panic.
//   - TestRevokeWhileSyncInFlight: a connection is revoked while its (slowed) sync is in flight:
//     the credentials are cleared, the workflow ends, and no Jira request starts after the revoke
//     completed.
//
// Every test also checks the invariants that must hold after any fault: no connector run left
// running, evidence observed exactly by the runs that finished (none half-written, none
// duplicated), no pending queue items or half-created links, one issue per finding and marker,
// no panic in any process log, no credential in any log or workflow history, and every process
// stops cleanly on SIGTERM.
//
// Run it alone with
//
//	go test ./faultsuite -v
//
// It needs Go (to build the binaries) and the test Postgres (JIRACONNECT_TEST_DATABASE_URL, a
// superuser URL; default postgres://postgres@127.0.0.1:5432/postgres). Process logs live in each
// test's temporary directory and their tails are printed when a test fails; set
// FAULTSUITE_LOG_DIR to keep them (a test switch, not product configuration).
package faultsuite
