package connections

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/apperr"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
)

// Configure applies a patch to a connection's evidence-sync configuration, validated whole,
// stores it with the connection.configure audit row (old and new settings) and tells the
// workflow, which reschedules at once. The stored configuration is authoritative: a workflow
// that misses the signal reloads it on its next start or continue-as-new.
func (m *Manager) Configure(ctx context.Context, orgID, connID uuid.UUID, patch ConfigPatch, by audit.Caller) (Connection, error) {
	conn, err := m.load(ctx, orgID, connID)
	if err != nil {
		return Connection{}, err
	}
	if conn.Status == StatusRevoked {
		return Connection{}, apperr.Conflict("connection_revoked", "the connection is revoked")
	}
	old := conn.Config
	cfg := patch.Apply(old)
	if err := cfg.Validate(); err != nil {
		return Connection{}, fieldFailure(err, "", "invalid_config", "config")
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return Connection{}, err
	}
	err = m.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.UpdateConnectionConfig(ctx, dbq.UpdateConnectionConfigParams{ID: conn.ID, Config: cfgJSON})
		if err != nil {
			return err
		}
		if conn, err = FromRow(row); err != nil {
			return err
		}
		return recordIn(ctx, q, orgID, conn.ID, "connection.configure", by,
			map[string]any{"old": evidenceSettings(old), "new": evidenceSettings(cfg)})
	})
	if err != nil {
		return Connection{}, err
	}
	if conn.Status != StatusPendingAuth {
		m.configChanged(ctx, conn.ID)
	}
	return conn, nil
}

// evidenceSettings is what the audit log records of a connection's evidence-sync configuration:
// every setting that decides what is collected from Jira.
func evidenceSettings(c Config) map[string]any {
	return map[string]any{"sync_cadence": c.SyncCadence.D().String(), "stale_threshold": c.StaleThreshold.D().String(),
		"resolved_jql": c.ResolvedJQL, "sample_size": c.SampleSize, "remediation": c.Remediation}
}

// configChanged tells the workflow to reload the configuration; a signal that is not delivered
// is only logged (the stored configuration is authoritative).
func (m *Manager) configChanged(ctx context.Context, connID uuid.UUID) {
	if err := m.Workflows.ConfigChanged(ctx, connID); err != nil {
		m.log().WarnContext(ctx, "config-changed signal not delivered", "connection_id", connID, "err", err)
	}
}

// ConfigureFindingSync sets (or, with enabled false, removes) an active connection's
// finding-sync configuration: the update is applied to the current configuration (or the
// defaults), validated, and checked against the connection's Jira createmeta with its own
// credentials — an unknown custom field is customfield_unknown, an issue type outside the project
// is refused, and so are required fields the rule cannot fill. It is stored with the
// connection.finding_sync_configure audit row (old and new in full: the configuration decides
// what is written to Jira, and holds no secret); findings whose push failed for configuration
// reasons are queued again, and the workflow is told.
func (m *Manager) ConfigureFindingSync(ctx context.Context, orgID, connID uuid.UUID, update findings.SyncConfigUpdate, by audit.Caller) (Connection, error) {
	conn, err := m.load(ctx, orgID, connID)
	if err != nil {
		return Connection{}, err
	}
	if err := requireStatus(conn, StatusActive); err != nil {
		return Connection{}, err
	}
	var next *findings.SyncConfig
	if update.Enabled == nil || *update.Enabled {
		base := findings.DefaultSyncConfig()
		if conn.Config.FindingSync != nil {
			base = conn.Config.FindingSync.Clone()
		}
		cfg := update.SyncConfigPatch.Apply(base)
		if err := cfg.Validate(); err != nil {
			return Connection{}, fieldFailure(err, "", "invalid_finding", "")
		}
		if conn.Kind == KindCloudOAuth && !slices.Contains(conn.Scopes, "write:jira-work") {
			return Connection{}, apperr.New(apperr.KindConflict, "scope_missing", "finding_sync",
				"finding sync needs the write:jira-work scope: re-authorize the connection (POST /v1/connections/{id}/reauth) first")
		}
		if err := m.validateAgainstJira(ctx, conn, cfg); err != nil {
			return Connection{}, err
		}
		next = &cfg
	}
	old := conn.Config.FindingSync
	cfgAll := conn.Config
	cfgAll.FindingSync = next
	cfgJSON, err := json.Marshal(cfgAll)
	if err != nil {
		return Connection{}, err
	}
	err = m.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.UpdateFindingSyncConfig(ctx, dbq.UpdateFindingSyncConfigParams{ID: conn.ID, Config: cfgJSON})
		if err != nil {
			return err
		}
		if conn, err = FromRow(row); err != nil {
			return err
		}
		if next != nil {
			// Findings whose push failed for configuration reasons get another chance.
			if _, err := q.EnqueueErroredLinks(ctx, conn.ID); err != nil {
				return err
			}
		}
		return recordIn(ctx, q, orgID, conn.ID, "connection.finding_sync_configure", by,
			map[string]any{"enabled": next != nil, "old": old, "new": next})
	})
	if err != nil {
		return Connection{}, err
	}
	m.configChanged(ctx, conn.ID)
	if next != nil {
		if err := m.Workflows.FindingsPending(ctx, conn.ID); err != nil {
			m.log().WarnContext(ctx, "findings-pending signal not delivered", "connection_id", conn.ID, "err", err)
		}
	}
	return conn, nil
}

// validateAgainstJira checks a finding-sync configuration with the connection's own credentials.
// The first problem Jira's createmeta shows is the failure (with its field), and every problem
// is in the message.
func (m *Manager) validateAgainstJira(ctx context.Context, conn Connection, cfg findings.SyncConfig) error {
	client, _, err := m.Connections.Client(ctx, conn.OrgID, conn.ID, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	report, err := client.ValidateCreateConfig(ctx, cfg.CreateCheck())
	if err != nil {
		switch jira.KindOf(err) {
		case jira.KindNotFound:
			return apperr.Invalid("finding_sync.project_key", "project %s is not visible to this connection", cfg.ProjectKey)
		case jira.KindReauthRequired, jira.KindUnauthorized:
			// The credentials, not the project, are the problem: say so, and what fixes it.
			return apperr.Conflict("reauth_required",
				"Jira no longer accepts this connection's credentials: re-authorize it (POST /v1/connections/{id}/reauth), then save the finding-sync configuration again")
		case jira.KindForbidden:
			return apperr.New(apperr.KindInvalid, "jira_forbidden", "finding_sync.project_key",
				"finding_sync.project_key: the connection may not read create metadata of "+cfg.ProjectKey)
		}
		return siteCallFailure("could not validate against Jira", err)
	}
	if len(report.Problems) == 0 {
		return nil
	}
	first := report.Problems[0]
	field := "finding_sync"
	switch first.Code {
	case jira.ProblemCustomFieldUnknown:
		if first.Role == findings.RoleFrameworkRefs {
			field = "finding_sync.framework_field"
		} else {
			field = "finding_sync.finding_id_field"
		}
	case jira.ProblemIssueTypeNotFound:
		field = "finding_sync.issue_type"
	}
	msgs := make([]string, 0, len(report.Problems))
	for _, p := range report.Problems {
		msgs = append(msgs, p.Message)
	}
	return apperr.New(apperr.KindInvalid, string(first.Code), field, field+": "+strings.Join(msgs, "; "))
}

// RotateWebhookSecret replaces the admin webhook's URL secret and signing secret of a token or
// PAT connection (audited connection.webhook_secret_rotate) and returns the new ones, to be shown
// once; deliveries to the old URL are refused from then on. OAuth connections use a dynamic
// webhook that is registered and rotated by the workflow.
func (m *Manager) RotateWebhookSecret(ctx context.Context, orgID, connID uuid.UUID, by audit.Caller) (Connection, WebhookSecrets, error) {
	conn, err := m.load(ctx, orgID, connID)
	if err != nil {
		return Connection{}, WebhookSecrets{}, err
	}
	if conn.Status == StatusRevoked {
		return Connection{}, WebhookSecrets{}, requireStatus(conn, StatusActive)
	}
	if conn.Kind == KindCloudOAuth {
		return Connection{}, WebhookSecrets{}, apperr.Conflict("dynamic_webhook",
			"OAuth connections use a dynamic webhook that jiraconnect registers and rotates itself")
	}
	hook, err := NewWebhookSecrets(true)
	if err != nil {
		return Connection{}, WebhookSecrets{}, err
	}
	sealedSigning, err := m.Connections.SealSigningSecret(ctx, orgID, conn.ID, hook.SigningSecret)
	if err != nil {
		return Connection{}, WebhookSecrets{}, err
	}
	err = m.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		if _, err := q.SetWebhookSecrets(ctx, dbq.SetWebhookSecretsParams{ID: conn.ID,
			SecretHash: HashURLSecret(hook.URLSecret), SigningSecret: sealedSigning}); err != nil {
			return err
		}
		return recordIn(ctx, q, orgID, conn.ID, "connection.webhook_secret_rotate", by, nil)
	})
	if err != nil {
		return Connection{}, WebhookSecrets{}, err
	}
	return conn, hook, nil
}
