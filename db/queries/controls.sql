-- name: UpsertControl :exec
INSERT INTO controls (id, framework, reference, title, rationale)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE
SET framework = EXCLUDED.framework, reference = EXCLUDED.reference,
    title = EXCLUDED.title, rationale = EXCLUDED.rationale;

-- name: DeleteControlEvidenceTypes :exec
DELETE FROM control_evidence_types WHERE control_id = $1;

-- name: InsertControlEvidenceType :exec
INSERT INTO control_evidence_types (control_id, evidence_type) VALUES ($1, $2);

-- name: DeleteControlsNotIn :exec
DELETE FROM controls WHERE NOT (id = ANY(sqlc.arg(keep)::text[]));
