// Package jirasim is a faithful, in-process simulator of one Jira site — Jira Cloud (REST v3/v2,
// OAuth 2.0 3LO through the api.atlassian.com gateway, API tokens) or Jira Data Center (REST v2,
// personal access tokens). It exists so that the jiraconnect client, workflows and benchmarks can
// be exercised against the behaviours documented in shared/JIRA-NOTES.md — token rotation, bounded
// JQL, token paging, ADF validation, transitions chosen by target status, at-least-once webhooks,
// rate limits — without a real Atlassian site, and with faults that are hard to provoke in reality.
//
// A *Sim is an http.Handler. One Sim is one site of one flavor; a Cloud Sim also plays
// auth.atlassian.com and api.atlassian.com on the same base URL because tests can only reach
// loopback. Everything a test can do through Go methods is also reachable through the JSON control
// API under /_sim/ so that other processes (the dev stack, benchmarks) can drive a standalone
// simulator (cmd/jirasim).
package jirasim

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"
)

// Flavor selects which Jira product a Sim imitates.
type Flavor string

const (
	// Cloud is Jira Cloud: /rest/api/3 and /rest/api/2 on the site URL with Basic email:apitoken,
	// the 3LO gateway /ex/jira/{cloudid}/rest/api/3 with OAuth bearer tokens, the OAuth
	// authorization server, dynamic webhooks, token-paged /search/jql and approximate counts.
	Cloud Flavor = "cloud"
	// DataCenter is Jira Data Center: /rest/api/2 (alias /rest/api/latest) with Bearer personal
	// access tokens or Basic user:password, offset-paged /search with totals, admin webhooks only.
	DataCenter Flavor = "datacenter"
)

// Well-known identifiers of the default site configuration. They mirror the shapes of a real site
// (string ids, per-site numbering) and are exported so that tests can assert on them without
// hard-coding magic strings in several places.
const (
	StatusToDo       = "10000"
	StatusInProgress = "3"
	StatusDone       = "10001"
	StatusWontDo     = "10002"
	StatusCancelled  = "10003"

	IssueTypeEpic          = "10000"
	IssueTypeTask          = "10001"
	IssueTypeStory         = "10002"
	IssueTypeBug           = "10004"
	IssueTypeVulnerability = "10005"

	ResolutionDone            = "10000"
	ResolutionWontDo          = "10001"
	ResolutionDuplicate       = "10002"
	ResolutionCannotReproduce = "10003"
	ResolutionCancelled       = "10004"

	// Transition ids of the default workflow. Their names ("Start work", "Resolve", ...) differ
	// from the target status names on purpose: clients must pick transitions by `to`.
	TransitionStartWork = "11"
	TransitionStopWork  = "21"
	TransitionResolve   = "31"
	TransitionWontDo    = "41"
	TransitionCancel    = "51"
	TransitionReopen    = "61"

	// Custom fields every site starts with.
	FieldFrameworkReferences = "customfield_10100" // multi-select
	FieldSecurityLabels      = "customfield_10101" // labels-type
	FieldFindingID           = "customfield_10102" // single-line text
	FieldFindingDetails      = "customfield_10103" // multi-line text (ADF on v3)
)

// Status category keys, the values clients must match on (names are display text).
const (
	CategoryNew           = "new"
	CategoryIndeterminate = "indeterminate"
	CategoryDone          = "done"
)

// OAuth scopes the simulator understands (classic scopes, JIRA-NOTES.md §1.7).
const (
	ScopeReadWork      = "read:jira-work"
	ScopeWriteWork     = "write:jira-work"
	ScopeReadUser      = "read:jira-user"
	ScopeManageWebhook = "manage:jira-webhook"
	ScopeOffline       = "offline_access"
)

// Options configures a Sim. The zero value is a Cloud site with default lifetimes.
type Options struct {
	// Flavor is Cloud (default) or DataCenter.
	Flavor Flavor
	// BaseURL is the site URL (used in `self` links and accessible-resources). It can also be set
	// after the listener exists with SetBaseURL.
	BaseURL string
	// CloudID is the site's cloud id; a random UUID when empty.
	CloudID string
	// SiteName is the accessible-resources `name`; "jirasim" when empty.
	SiteName string

	// OAuthClientID/OAuthClientSecret identify the one 3LO app the site trusts. Defaults:
	// "jirasim-client" / "jirasim-secret".
	OAuthClientID     string
	OAuthClientSecret string
	// OAuthRedirectURIs, when non-empty, restricts redirect_uri to these callback URLs, like the
	// developer console's Authorization settings do.
	OAuthRedirectURIs []string
	// ConsentUser is the email of the user who consents on /authorize; the site admin when empty.
	ConsentUser string
	// AccessTokenTTL is the access-token lifetime (expires_in); 1h when zero.
	AccessTokenTTL time.Duration
	// AuthCodeTTL is the authorization-code lifetime; 10m when zero.
	AuthCodeTTL time.Duration
	// RefreshLeeway is the window in which a rotated refresh token may be reused; 10m when zero
	// (Atlassian's current value). Negative means none, as Atlassian may set it: any reuse of a
	// rotated refresh token revokes the whole grant.
	RefreshLeeway time.Duration
	// ExtraSites are additional accessible-resources entries for unrelated sites, so clients
	// must match the site on its url instead of taking the first entry.
	ExtraSites []AccessibleResource

	// WebhookTTL is the lifetime of dynamic webhooks; 30 days when zero.
	WebhookTTL time.Duration
	// Webhooks tunes the outgoing delivery machinery.
	Webhooks DeliveryOptions

	// Now is the wall clock; time.Now when nil. AdvanceClock shifts it for expiry tests.
	Now func() time.Time
	// RandSeed seeds every random decision (fault rates, jitter, token generation is crypto/rand
	// and not affected) so that fault scenarios are reproducible.
	RandSeed int64
	// RequestLogSize bounds the request ring buffer; 4096 when zero.
	RequestLogSize int
	// Logger receives structured logs; slog.Default() when nil. Secrets are never logged.
	Logger *slog.Logger
	// ControlToken, when set, must be sent as X-Sim-Control-Token on /_sim/ requests.
	ControlToken string
}

// DeliveryOptions tunes outgoing webhook delivery.
type DeliveryOptions struct {
	// Workers is the number of concurrent delivery goroutines; 4 when zero.
	Workers int
	// MaxAttempts bounds attempts per delivery (first try included); 5 when zero. Data Center
	// does not retry (JIRA-NOTES.md §6.4), so a DataCenter Sim always makes one attempt.
	MaxAttempts int
	// InitialBackoff is the delay before the first retry, doubled per attempt; 1s when zero.
	InitialBackoff time.Duration
	// MaxBackoff caps the retry delay; 30s when zero.
	MaxBackoff time.Duration
	// Timeout bounds one delivery attempt; 10s when zero.
	Timeout time.Duration
	// Client sends deliveries; a client with Timeout when nil.
	Client *http.Client
	// MaxRecorded bounds the delivery-attempt log; 10000 when zero.
	MaxRecorded int
}

// AccessibleResource is one entry of GET /oauth/token/accessible-resources.
type AccessibleResource struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	URL       string   `json:"url"`
	Scopes    []string `json:"scopes"`
	AvatarURL string   `json:"avatarUrl"`
}

// User is a site user. Cloud identifies users by AccountID; Data Center by Name/Key.
type User struct {
	AccountID   string `json:"accountId,omitempty"`
	Name        string `json:"name,omitempty"`
	Key         string `json:"key,omitempty"`
	Email       string `json:"emailAddress"`
	DisplayName string `json:"displayName"`
	Active      bool   `json:"active"`
}

// ProjectSpec describes a project to add.
type ProjectSpec struct {
	Key  string `json:"key"`
	Name string `json:"name"`
	// CreateForbidden makes POST /issue in this project answer 403, like a project whose
	// permission scheme does not grant Create Issues to the caller.
	CreateForbidden bool `json:"createForbidden"`
}

// Project is a project as the simulator holds it.
type Project struct {
	ID              string `json:"id"`
	Key             string `json:"key"`
	Name            string `json:"name"`
	CreateForbidden bool   `json:"createForbidden"`
	IssueCount      int    `json:"issueCount"`
}

// FieldType is the kind of a custom field, which decides its JSON input shape.
type FieldType string

const (
	FieldMultiSelect FieldType = "multiselect"     // [{"value":..}] or [{"id":..}]
	FieldCheckboxes  FieldType = "multicheckboxes" // same shape as multiselect
	FieldSelect      FieldType = "select"          // {"value":..} or {"id":..}
	FieldLabels      FieldType = "labels"          // ["a","b"]
	FieldTextField   FieldType = "textfield"       // "string"
	FieldTextArea    FieldType = "textarea"        // ADF on Cloud v3, string on v2
)

// CustomFieldSpec describes a custom field to add.
type CustomFieldSpec struct {
	Name    string    `json:"name"`
	Type    FieldType `json:"type"`
	Options []string  `json:"options,omitempty"`
	// IssueTypes limits the create screens the field is on (names); all issue types when empty.
	IssueTypes []string `json:"issueTypes,omitempty"`
}

// CustomField is a custom field definition.
type CustomField struct {
	ID         string        `json:"id"`
	Name       string        `json:"name"`
	Type       FieldType     `json:"type"`
	Options    []FieldOption `json:"options,omitempty"`
	IssueTypes []string      `json:"issueTypes,omitempty"`
}

// FieldOption is an allowed value of a select-like custom field.
type FieldOption struct {
	ID    string `json:"id"`
	Value string `json:"value"`
}

// IssueSpec describes an issue created through the Go or control API ("by a human in the UI").
// Names are used for issue type, status, resolution and priority.
type IssueSpec struct {
	Project     string   `json:"project"`
	IssueType   string   `json:"issueType"`
	Summary     string   `json:"summary"`
	Description string   `json:"description,omitempty"`
	Labels      []string `json:"labels,omitempty"`
	// Status is the initial status name; "To Do" when empty. A done-category status gets a
	// resolution (Resolution, or the status's natural one) and a resolution date.
	Status     string `json:"status,omitempty"`
	Resolution string `json:"resolution,omitempty"`
	Priority   string `json:"priority,omitempty"`
	// Reporter and Assignee are emails (Cloud) or user names (DC); the admin reports by default.
	Reporter string `json:"reporter,omitempty"`
	Assignee string `json:"assignee,omitempty"`
	// CustomFields holds values in REST input shape keyed by field id.
	CustomFields map[string]json.RawMessage `json:"customFields,omitempty"`
	// Created back-dates the issue; now when zero. Resolved sets the resolution date of a
	// done-category issue; Created when zero.
	Created  time.Time `json:"created,omitzero"`
	Resolved time.Time `json:"resolved,omitzero"`
	// Silent suppresses the jira:issue_created webhook (for fixtures that predate a test).
	Silent bool `json:"silent,omitempty"`
}

// Issue is a snapshot of an issue for assertions.
type Issue struct {
	ID             string    `json:"id"`
	Key            string    `json:"key"`
	Project        string    `json:"project"`
	IssueType      string    `json:"issueType"`
	Summary        string    `json:"summary"`
	Status         string    `json:"status"`
	StatusID       string    `json:"statusId"`
	StatusCategory string    `json:"statusCategory"`
	Resolution     string    `json:"resolution,omitempty"`
	Priority       string    `json:"priority"`
	Labels         []string  `json:"labels"`
	Reporter       string    `json:"reporter,omitempty"`
	Assignee       string    `json:"assignee,omitempty"`
	Created        time.Time `json:"created"`
	Updated        time.Time `json:"updated"`
	ResolutionDate time.Time `json:"resolutionDate,omitzero"`
	// Description is the plain text of the description (ADF flattened).
	Description string `json:"description,omitempty"`
	// DescriptionADF is the stored ADF document when the description was written through v3.
	DescriptionADF json.RawMessage `json:"descriptionADF,omitempty"`
	// CustomFields holds the v2 REST representation of every set custom field.
	CustomFields map[string]any `json:"customFields,omitempty"`
	Changelog    []ChangeGroup  `json:"changelog,omitempty"`
}

// ChangeGroup is one changelog entry.
type ChangeGroup struct {
	ID      string       `json:"id"`
	Author  string       `json:"author"`
	Created time.Time    `json:"created"`
	Items   []ChangeItem `json:"items"`
}

// ChangeItem is one field change inside a changelog entry (JIRA-NOTES.md §6.3).
type ChangeItem struct {
	Field      string  `json:"field"`
	FieldType  string  `json:"fieldtype"`
	FieldID    string  `json:"fieldId"`
	From       *string `json:"from"`
	FromString *string `json:"fromString"`
	To         *string `json:"to"`
	ToString   *string `json:"toString"`
}

// IssueEdit is a field edit made by a human in the UI. Nil members are left alone.
type IssueEdit struct {
	Summary *string   `json:"summary,omitempty"`
	Labels  *[]string `json:"labels,omitempty"`
}

// SeedSpec sizes the generated data set.
type SeedSpec struct {
	// Projects and Issues to generate (issues are spread over projects with a skew).
	Projects int `json:"projects"`
	Issues   int `json:"issues"`
	// SecurityShare is the share of issues labelled "security" (and typed Bug/Vulnerability).
	SecurityShare float64 `json:"securityShare"`
	// DoneShare is the share of issues in a done-category status; 0.6 when zero.
	DoneShare float64 `json:"doneShare"`
	// ResolvedRecentShare is the share of done issues resolved within the last 30 days.
	ResolvedRecentShare float64 `json:"resolvedRecentShare"`
	// HistoryDays is how far back creation dates go; 730 when zero.
	HistoryDays int `json:"historyDays"`
	// KeyPrefix prefixes generated project keys ("P" → P0001); "P" when empty. The first
	// project is always SEC so that the connector's default configuration finds something.
	KeyPrefix string `json:"keyPrefix"`
}

// SeedStats reports what Seed generated.
type SeedStats struct {
	Projects int           `json:"projects"`
	Issues   int           `json:"issues"`
	Elapsed  time.Duration `json:"elapsedNanos"`
}

// OAuthTokens is a token pair issued by the simulated authorization server.
type OAuthTokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
}

// AuthKind classifies the credentials a request carried.
type AuthKind string

const (
	AuthNone        AuthKind = "none"
	AuthBasic       AuthKind = "basic"        // valid Basic credentials (API token or DC password)
	AuthBearerOAuth AuthKind = "bearer-oauth" // a 3LO access token this site issued (even if expired)
	AuthBearerPAT   AuthKind = "bearer-pat"   // a Data Center personal access token
	AuthInvalid     AuthKind = "invalid"      // unrecognised credentials
)

// RequestRecord is one recorded request.
type RequestRecord struct {
	Time      time.Time     `json:"time"`
	Method    string        `json:"method"`
	Path      string        `json:"path"`
	Query     string        `json:"query,omitempty"`
	Auth      AuthKind      `json:"auth"`
	Status    int           `json:"status"`
	Operation string        `json:"operation"`
	Fault     string        `json:"fault,omitempty"`
	Duration  time.Duration `json:"durationNanos"`
}

// Fault describes misbehaviour injected on the routes matching a pattern. Several kinds can be
// combined; they are checked in the order latency, reset, rate limit, 503, 5xx, then the handler
// runs and body faults or commit-then-drop apply to its response.
type Fault struct {
	// Latency is added before the request is handled, plus a uniformly random Jitter.
	Latency time.Duration `json:"latencyNanos,omitempty"`
	Jitter  time.Duration `json:"jitterNanos,omitempty"`
	// ErrorRate in [0,1] answers that share of requests with ErrorStatus (500 when zero).
	ErrorRate   float64 `json:"errorRate,omitempty"`
	ErrorStatus int     `json:"errorStatus,omitempty"`
	// RateLimit answers 429 once its token bucket is empty.
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
	// Unavailable answers 503 with Retry-After: UnavailableRetryAfter seconds.
	Unavailable           bool `json:"unavailable,omitempty"`
	UnavailableRetryAfter int  `json:"unavailableRetryAfter,omitempty"`
	// TruncateBody cuts the JSON response in half; MalformedBody replaces it with invalid JSON.
	TruncateBody  bool `json:"truncateBody,omitempty"`
	MalformedBody bool `json:"malformedBody,omitempty"`
	// ResetConnection hijacks the connection and closes it without answering (nothing applied).
	ResetConnection bool `json:"resetConnection,omitempty"`
	// CommitThenDrop applies the request (create, transition, ...) and then closes the
	// connection without a response, the classic ambiguous-write failure.
	CommitThenDrop bool `json:"commitThenDrop,omitempty"`
	// Times limits the fault to the next N matching requests; 0 means every request.
	Times int `json:"times,omitempty"`
}

// RateLimit configures a token bucket for 429 answers.
type RateLimit struct {
	// Rate is the refill rate in requests per second; Burst the bucket size.
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
	// RetryAfter is the Retry-After value in seconds; derived from Rate when zero.
	RetryAfter int `json:"retryAfter,omitempty"`
	// Reason is the RateLimit-Reason header; "jira-burst-based" when empty.
	Reason string `json:"reason,omitempty"`
	// BetaHeaders sends Beta-Retry-After (and X-Beta-Ratelimit-Reason) instead of Retry-After,
	// like pre-enforcement responses seen in 2026 (JIRA-NOTES.md §7.1).
	BetaHeaders bool `json:"betaHeaders,omitempty"`
	// SimulatedTime refills the bucket only as the simulator's clock is advanced (AdvanceClock),
	// never with wall time, so that a test decides when the budget comes back however fast or
	// slow its machine runs: more than Burst requests between two advances are always limited.
	SimulatedTime bool `json:"simulatedTime,omitempty"`
}

// WebhookKind distinguishes dynamic (3LO app) from admin webhooks.
type WebhookKind string

const (
	WebhookDynamic WebhookKind = "dynamic"
	WebhookAdmin   WebhookKind = "admin"
)

// WebhookRegistration is a registered webhook.
type WebhookRegistration struct {
	ID             int64       `json:"id"`
	Kind           WebhookKind `json:"kind"`
	Name           string      `json:"name,omitempty"`
	URL            string      `json:"url"`
	Events         []string    `json:"events"`
	JQLFilter      string      `json:"jqlFilter,omitempty"`
	FieldIDsFilter []string    `json:"fieldIdsFilter,omitempty"`
	ExpiresAt      time.Time   `json:"expiresAt,omitzero"`
	HasSecret      bool        `json:"hasSecret"`
	ClientID       string      `json:"clientId,omitempty"`
}

// AdminWebhookSpec describes an admin webhook (System → WebHooks, or /rest/webhooks/1.0).
type AdminWebhookSpec struct {
	Name   string   `json:"name"`
	URL    string   `json:"url"`
	Events []string `json:"events"`
	// JQL scopes issue events; empty matches every issue.
	JQL string `json:"jql,omitempty"`
	// Secret, when set, signs deliveries with X-Hub-Signature: sha256=<hex hmac>.
	Secret string `json:"secret,omitempty"`
}

// Delivery is one webhook delivery attempt.
type Delivery struct {
	Identifier string        `json:"identifier"`
	WebhookID  int64         `json:"webhookId"`
	Event      string        `json:"event"`
	URL        string        `json:"url"`
	Attempt    int           `json:"attempt"`
	Duplicate  bool          `json:"duplicate,omitempty"`
	Lost       bool          `json:"lost,omitempty"`
	Status     int           `json:"status"`
	Error      string        `json:"error,omitempty"`
	Time       time.Time     `json:"time"`
	Duration   time.Duration `json:"durationNanos"`
	Body       []byte        `json:"body,omitempty"`
	Signature  string        `json:"signature,omitempty"`
}

// WebhookFaults are delivery-side knobs.
type WebhookFaults struct {
	// Duplicate sends every event twice (same identifier), as Jira's at-least-once delivery may.
	Duplicate bool `json:"duplicate,omitempty"`
	// Delay postpones every first attempt.
	Delay time.Duration `json:"delayNanos,omitempty"`
	// LoseNext silently drops the next N deliveries (recorded with Lost=true, never sent).
	LoseNext int `json:"loseNext,omitempty"`
}

// ScanStats tells how much work JQL evaluation did, so tests can prove that counts at scale are
// answered from aggregates instead of scans without timing anything.
type ScanStats struct {
	// IssuesScanned is the number of issues a JQL predicate was evaluated against.
	IssuesScanned uint64 `json:"issuesScanned"`
	// AggregateAnswers counts queries answered purely from maintained aggregates.
	AggregateAnswers uint64 `json:"aggregateAnswers"`
	// IndexAnswers counts queries answered from an index range (then filtered).
	IndexAnswers uint64 `json:"indexAnswers"`
	// FullScans counts queries that had to look at every issue.
	FullScans uint64 `json:"fullScans"`
}

// Operation names recorded in RequestRecord.Operation and counted by OperationCounts.
const (
	OpAuthorize           = "oauth.authorize"
	OpToken               = "oauth.token"
	OpAccessibleResources = "oauth.accessibleResources"
	OpMyself              = "myself"
	OpServerInfo          = "serverInfo"
	OpProjectSearch       = "project.search"
	OpProjectList         = "project.list"
	OpFields              = "field.list"
	OpApproximateCount    = "search.approximateCount"
	OpSearchJQL           = "search.jql"
	OpSearchLegacy        = "search.legacy" // Cloud: 410; DC: the real search
	OpIssueGet            = "issue.get"
	OpIssueCreate         = "issue.create"
	OpCreateMetaTypes     = "createmeta.issuetypes"
	OpCreateMetaFields    = "createmeta.fields"
	OpTransitionsGet      = "transitions.get"
	OpTransitionDo        = "transitions.do"
	OpWebhookList         = "webhook.list"
	OpWebhookRegister     = "webhook.register"
	OpWebhookDelete       = "webhook.delete"
	OpWebhookRefresh      = "webhook.refresh"
	OpAdminWebhook        = "adminWebhook"
	OpControl             = "control"
	OpNotFound            = "notFound"
)
