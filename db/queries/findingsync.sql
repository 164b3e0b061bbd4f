-- Finding sync: the work queue and the finding ⇄ issue links.

-- name: DeleteQueueItem :exec
-- Only the version that was processed: a change enqueued meanwhile stays queued.
DELETE FROM finding_sync_queue WHERE connection_id = $1 AND finding_id = $2 AND enqueued_at = $3;

-- name: DelayQueueItem :exec
UPDATE finding_sync_queue
SET attempts = attempts + 1, not_before = sqlc.arg(not_before), last_error = sqlc.narg(last_error)
WHERE connection_id = sqlc.arg(connection_id) AND finding_id = sqlc.arg(finding_id);

-- name: ClearQueue :execrows
DELETE FROM finding_sync_queue WHERE connection_id = $1;

-- name: EnqueueErroredLinks :execrows
-- After a configuration change, give findings whose push failed for configuration reasons
-- another chance.
INSERT INTO finding_sync_queue (org_id, connection_id, finding_id)
SELECT l.org_id, l.connection_id, l.finding_id FROM finding_issue_links l
WHERE l.connection_id = $1 AND l.last_error_kind IS NOT NULL
ON CONFLICT (connection_id, finding_id) DO UPDATE SET not_before = now(), attempts = 0, enqueued_at = now();

-- name: GetLink :one
SELECT * FROM finding_issue_links WHERE finding_id = $1 AND connection_id = $2;

-- name: SetLinkCreated :one
UPDATE finding_issue_links
SET state = 'linked', issue_id = sqlc.arg(issue_id), issue_key = sqlc.arg(issue_key),
    last_jira_status = sqlc.narg(last_jira_status), last_pushed_status = sqlc.narg(last_pushed_status),
    last_push_at = now(), last_error = NULL, last_error_kind = NULL, updated_at = now()
WHERE finding_id = sqlc.arg(finding_id) AND connection_id = sqlc.arg(connection_id)
RETURNING *;

-- name: SetLinkError :exec
UPDATE finding_issue_links
SET last_error = sqlc.arg(last_error), last_error_kind = sqlc.arg(last_error_kind), updated_at = now()
WHERE finding_id = sqlc.arg(finding_id) AND connection_id = sqlc.arg(connection_id);

-- name: SetLinkInbound :exec
UPDATE finding_issue_links
SET last_jira_status = sqlc.arg(jira_status), last_inbound_at = sqlc.arg(inbound_at), updated_at = now()
WHERE finding_id = sqlc.arg(finding_id) AND connection_id = sqlc.arg(connection_id);

-- name: SetReconciledAt :exec
UPDATE connections SET reconciled_at = $2 WHERE id = $1;

-- name: SetDynamicWebhooks :exec
UPDATE connections
SET dynamic_webhook_ids = sqlc.arg(ids), dynamic_webhook_expires_at = sqlc.narg(expires_at),
    webhook_secret_hash = coalesce(sqlc.narg(secret_hash), webhook_secret_hash), updated_at = now()
WHERE id = sqlc.arg(id) AND deleted_at IS NULL;

-- name: SetFindingSyncError :exec
-- A finding push failed for a configuration reason (kept until the configuration is saved again).
UPDATE connections
SET finding_sync_error = sqlc.arg(error), finding_sync_error_kind = sqlc.arg(error_kind), finding_sync_error_at = sqlc.arg(at),
    updated_at = now()
WHERE id = sqlc.arg(id) AND deleted_at IS NULL;

-- Queries of the finding-sync activities (activities/findingsync*.go). They take the activity's
-- clock as an argument instead of using now(): every time the activities compare — queue due
-- times, the age of a create intent, when a push started versus when Jira reported a change —
-- then comes from one clock, and tests can drive it.

-- name: DueQueueItemsAt :many
SELECT finding_id, enqueued_at, attempts FROM finding_sync_queue
WHERE connection_id = sqlc.arg(connection_id) AND not_before <= sqlc.arg(now)
ORDER BY not_before, enqueued_at, finding_id
LIMIT sqlc.arg(batch)::integer;

-- name: QueueDueAt :one
-- How many items are due at now.
SELECT count(*)::integer FROM finding_sync_queue
WHERE connection_id = sqlc.arg(connection_id) AND not_before <= sqlc.arg(now);

-- name: QueueNextDueAt :many
-- When the earliest item that is not due at now becomes due (no row: none).
SELECT not_before FROM finding_sync_queue
WHERE connection_id = sqlc.arg(connection_id) AND not_before > sqlc.arg(now)
ORDER BY not_before LIMIT 1;

-- name: QueueItemPending :one
SELECT EXISTS (SELECT 1 FROM finding_sync_queue WHERE connection_id = $1 AND finding_id = $2) AS pending;

-- name: RequeueFinding :exec
-- Queue a finding unless it is queued already; unlike EnqueueFinding it never resets the backoff
-- of a queued item (a rate-limit delay stays in force).
INSERT INTO finding_sync_queue (org_id, connection_id, finding_id, enqueued_at, not_before)
VALUES (sqlc.arg(org_id), sqlc.arg(connection_id), sqlc.arg(finding_id), sqlc.arg(at), sqlc.arg(at))
ON CONFLICT (connection_id, finding_id) DO NOTHING;

-- name: ClaimLinkIntent :one
-- Records the intent to create an issue (state creating) before Jira is called. inserted tells
-- the caller whether this call recorded it: an intent that already existed may stand for a create
-- that reached Jira, so the caller must look for the issue before creating another one.
INSERT INTO finding_issue_links (org_id, finding_id, connection_id, state, created_at, updated_at)
VALUES (sqlc.arg(org_id), sqlc.arg(finding_id), sqlc.arg(connection_id), 'creating', sqlc.arg(at), sqlc.arg(at))
ON CONFLICT (finding_id, connection_id) DO UPDATE SET updated_at = finding_issue_links.updated_at
RETURNING org_id, finding_id, connection_id, state, issue_id, issue_key, last_pushed_status, last_jira_status,
          last_push_at, last_inbound_at, last_error, last_error_kind, created_at, updated_at, (xmax = 0) AS inserted;

-- name: TouchLinkIntent :execrows
-- Marks the moment a create request is about to be sent (updated_at) and clears the previous
-- attempt's error: from now on the intent is ambiguous until a search proves otherwise.
UPDATE finding_issue_links
SET updated_at = sqlc.arg(at), last_error = NULL, last_error_kind = NULL
WHERE finding_id = sqlc.arg(finding_id) AND connection_id = sqlc.arg(connection_id) AND state = 'creating';

-- name: DeleteLinkIntent :execrows
-- Drops an intent that is known not to have produced an issue (and is no longer wanted).
DELETE FROM finding_issue_links
WHERE finding_id = $1 AND connection_id = $2 AND state = 'creating';

-- name: LockLink :one
SELECT * FROM finding_issue_links WHERE finding_id = $1 AND connection_id = $2 FOR UPDATE;

-- name: LockLinkByIssue :one
SELECT * FROM finding_issue_links WHERE connection_id = $1 AND issue_id = $2 FOR UPDATE;

-- name: LinksByIssueIDs :many
SELECT * FROM finding_issue_links
WHERE connection_id = sqlc.arg(connection_id) AND issue_id = ANY (sqlc.arg(issue_ids)::text[]);

-- name: OldestLinkCreatedAt :many
-- The creation time of the connection's oldest linked issue (no row: no linked issue).
SELECT created_at FROM finding_issue_links
WHERE connection_id = $1 AND state = 'linked'
ORDER BY created_at LIMIT 1;

-- name: BeginLinkPush :exec
-- Records, before the first Jira call of a transition, which status is being pushed and when:
-- from here until Jira reports a change (last_inbound_at >= last_push_at) the link awaits the
-- echo of its own transition.
UPDATE finding_issue_links
SET last_pushed_status = sqlc.arg(pushed_status), last_push_at = sqlc.arg(at), updated_at = sqlc.arg(at)
WHERE finding_id = sqlc.arg(finding_id) AND connection_id = sqlc.arg(connection_id);

-- name: FinishLinkPush :exec
-- A transition succeeded: the issue is in pushed_status as of at.
UPDATE finding_issue_links
SET last_pushed_status = sqlc.arg(pushed_status), last_jira_status = sqlc.arg(pushed_status),
    last_push_at = sqlc.arg(at), last_error = NULL, last_error_kind = NULL, updated_at = sqlc.arg(at)
WHERE finding_id = sqlc.arg(finding_id) AND connection_id = sqlc.arg(connection_id);

-- name: SetLinkJiraStatus :exec
-- The issue was found already in the wanted status (no transition, so no echo to wait for).
UPDATE finding_issue_links
SET last_jira_status = sqlc.arg(jira_status), last_error = NULL, last_error_kind = NULL, updated_at = now()
WHERE finding_id = sqlc.arg(finding_id) AND connection_id = sqlc.arg(connection_id);

-- name: RestoreLinkPush :exec
-- Undoes BeginLinkPush when the push changed nothing in Jira.
UPDATE finding_issue_links
SET last_pushed_status = sqlc.narg(pushed_status), last_push_at = sqlc.narg(push_at), updated_at = now()
WHERE finding_id = sqlc.arg(finding_id) AND connection_id = sqlc.arg(connection_id);

-- name: DelayDueQueue :execrows
-- Jira rate-limited the connection: every item due before until waits until then (attempts are
-- not counted: nothing was wrong with the items).
UPDATE finding_sync_queue SET not_before = sqlc.arg(until)
WHERE connection_id = sqlc.arg(connection_id) AND not_before < sqlc.arg(until);
