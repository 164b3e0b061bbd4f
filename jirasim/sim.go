package jirasim

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Sim is one simulated Jira site. It is safe for concurrent use; create it with New.
type Sim struct {
	flavor  Flavor
	opts    Options
	log     *slog.Logger
	cloudID string

	baseMu  sync.RWMutex
	baseURL string

	clockOffset atomic.Int64 // nanoseconds added to opts.Now()

	// mu guards st. Reads (search, get) take the read lock; every mutation the write lock.
	mu sync.RWMutex
	st *store

	auth   *authState
	faults *faultSet
	reqs   *requestLog
	hooks  *webhookHub

	searchLag atomic.Int64 // nanoseconds
	// pageBudget caps the size of a /search/jql page in bytes of rendered issues (0: no cap).
	pageBudget atomic.Int64

	scanned    atomic.Uint64
	aggAnswers atomic.Uint64
	idxAnswers atomic.Uint64
	fullScans  atomic.Uint64

	admin uint32 // user index of the site admin

	// projectList caches the encoded GET /project answer (see handleProjectList).
	projectList projectListCache
}

// New creates a site with the default metadata (statuses, issue types, workflow, resolutions,
// priorities, the four default custom fields) and one admin user, but no projects: add them with
// AddProject/AddIssue or generate a data set with Seed.
func New(opts Options) *Sim {
	if opts.Flavor == "" {
		opts.Flavor = Cloud
	}
	if opts.SiteName == "" {
		opts.SiteName = "jirasim"
	}
	if opts.OAuthClientID == "" {
		opts.OAuthClientID = "jirasim-client"
	}
	if opts.OAuthClientSecret == "" {
		opts.OAuthClientSecret = "jirasim-secret"
	}
	if opts.AccessTokenTTL <= 0 {
		opts.AccessTokenTTL = time.Hour
	}
	if opts.AuthCodeTTL <= 0 {
		opts.AuthCodeTTL = 10 * time.Minute
	}
	if opts.RefreshLeeway == 0 {
		opts.RefreshLeeway = 10 * time.Minute
	}
	if opts.WebhookTTL <= 0 {
		opts.WebhookTTL = 30 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RequestLogSize <= 0 {
		opts.RequestLogSize = 4096
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cloudID := opts.CloudID
	if cloudID == "" {
		cloudID = uuid.NewString()
	}
	s := &Sim{
		flavor:  opts.Flavor,
		opts:    opts,
		log:     opts.Logger.With(slog.String("component", "jirasim"), slog.String("flavor", string(opts.Flavor))),
		cloudID: cloudID,
		baseURL: strings.TrimRight(opts.BaseURL, "/"),
		st:      newStore(opts.Flavor),
	}
	s.st.addDefaultFields()
	admin, err := s.st.addUser(User{Email: "admin@example.com", Name: "admin", DisplayName: "Site Admin"})
	if err != nil {
		panic(fmt.Sprintf("jirasim: default admin: %v", err))
	}
	s.admin = admin
	s.auth = newAuthState()
	s.faults = newFaultSet(uint64(opts.RandSeed))
	s.reqs = newRequestLog(opts.RequestLogSize)
	s.hooks = newWebhookHub(s, opts.Webhooks)
	return s
}

// Server couples a Sim with the httptest.Server that serves it. Close stops both.
type Server struct {
	*Sim
	HTTP *httptest.Server
	// URL is the site base URL (the httptest server's URL).
	URL string
}

// NewServer starts a Sim on a loopback httptest.Server and sets its base URL, the usual setup
// for tests: `srv := jirasim.NewServer(opts); defer srv.Close()`.
func NewServer(opts Options) *Server {
	sim := New(opts)
	hs := httptest.NewServer(sim)
	sim.SetBaseURL(hs.URL)
	return &Server{Sim: sim, HTTP: hs, URL: hs.URL}
}

// Close stops webhook delivery and the HTTP server.
func (s *Server) Close() {
	s.HTTP.Close()
	_ = s.Sim.Close()
}

// SetBaseURL sets the site URL used in `self` links and accessible-resources. Call it once the
// listener exists (httptest.NewServer picks a port after the handler was built).
func (s *Sim) SetBaseURL(u string) {
	s.baseMu.Lock()
	s.baseURL = strings.TrimRight(u, "/")
	s.baseMu.Unlock()
}

// BaseURL returns the site URL.
func (s *Sim) BaseURL() string {
	s.baseMu.RLock()
	defer s.baseMu.RUnlock()
	return s.baseURL
}

// GatewayURL returns the 3LO API base for this site: {base}/ex/jira/{cloudid}.
func (s *Sim) GatewayURL() string { return s.BaseURL() + "/ex/jira/" + s.cloudID }

// Flavor returns the product this Sim imitates.
func (s *Sim) Flavor() Flavor { return s.flavor }

// CloudID returns the site's cloud id.
func (s *Sim) CloudID() string { return s.cloudID }

// Close stops the webhook delivery goroutines. Pending deliveries are abandoned. It is safe to
// call more than once.
func (s *Sim) Close() error {
	s.hooks.close()
	return nil
}

// Now is the simulator's clock (Options.Now shifted by AdvanceClock).
func (s *Sim) Now() time.Time {
	return s.opts.Now().Add(time.Duration(s.clockOffset.Load()))
}

// AdvanceClock moves the simulator's clock forward (or back, with a negative d). It lets tests
// expire authorization codes, access tokens, refresh leeways and webhooks without sleeping.
func (s *Sim) AdvanceClock(d time.Duration) { s.clockOffset.Add(int64(d)) }

func (s *Sim) nowMs() int64 { return s.Now().UnixMilli() }

// randomToken returns an unguessable token with a recognisable prefix.
func randomToken(prefix string) string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("jirasim: crypto/rand failed: %v", err))
	}
	return prefix + hex.EncodeToString(b[:])
}

// ---- users, projects, fields ----

// AdminUser returns the site administrator every Sim starts with (admin@example.com / admin).
func (s *Sim) AdminUser() User {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.users[s.admin].User
}

// AddUser adds a user. Missing identifiers are derived (name from the email's local part, a
// Cloud-style accountId, a DC-style key).
func (s *Sim) AddUser(u User) (User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.st.addUser(u)
	if err != nil {
		return User{}, err
	}
	return s.st.users[i].User, nil
}

// FindUser looks a user up by accountId, name, key or email.
func (s *Sim) FindUser(v string) (User, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.st.findUser(v)
	if !ok {
		return User{}, false
	}
	return s.st.users[i].User, true
}

// AddProject adds a project.
func (s *Sim) AddProject(spec ProjectSpec) (Project, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.st.addProject(spec)
	if err != nil {
		return Project{}, err
	}
	s.st.projects[i].lead = s.admin + 1
	return s.projectLocked(i), nil
}

func (s *Sim) projectLocked(i uint32) Project {
	p := s.st.projects[i]
	return Project{ID: projectID(i), Key: p.key, Name: p.name, CreateForbidden: p.createForbidden, IssueCount: len(p.issues)}
}

// GetProject returns a project by key or id.
func (s *Sim) GetProject(keyOrID string) (Project, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.st.findProject(keyOrID)
	if !ok {
		return Project{}, false
	}
	return s.projectLocked(i), true
}

// SetProjectCreateForbidden toggles the 403-on-create behaviour of a project.
func (s *Sim) SetProjectCreateForbidden(key string, forbidden bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.st.findProject(key)
	if !ok {
		return fmt.Errorf("set create-forbidden: project %q does not exist", key)
	}
	s.st.projects[i].createForbidden = forbidden
	return nil
}

// ProjectCount returns the number of projects in O(1).
func (s *Sim) ProjectCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.st.projects)
}

// IssueCount returns the number of issues in O(1).
func (s *Sim) IssueCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.st.issues)
}

// AddCustomField adds a custom field (on every project's create screens, limited to IssueTypes).
func (s *Sim) AddCustomField(spec CustomFieldSpec) (CustomField, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.st.addField(spec)
	if err != nil {
		return CustomField{}, err
	}
	return f.CustomField, nil
}

// CustomFields lists the custom field definitions.
func (s *Sim) CustomFields() []CustomField {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]CustomField, 0, len(s.st.fields))
	for _, f := range s.st.fields {
		out = append(out, f.CustomField)
	}
	return out
}

// SetFieldRequired marks a field (system field id such as "priority"/"labels"/"description", or a
// custom field id) required or optional on the create screen of one project and issue type
// (issue type by name or id; "*" or "" for every issue type).
func (s *Sim) SetFieldRequired(projectKey, issueType, fieldID string, required bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.st.findProject(projectKey)
	if !ok {
		return fmt.Errorf("set field required: project %q does not exist", projectKey)
	}
	if !s.st.isCreateField(fieldID) {
		return fmt.Errorf("set field required: %q is not a create-screen field", fieldID)
	}
	var types []uint8
	if issueType == "" || issueType == "*" {
		for t := range numIssueTypes {
			types = append(types, t)
		}
	} else {
		t, ok := lookupIssueType(issueType)
		if !ok {
			return fmt.Errorf("set field required: issue type %q does not exist", issueType)
		}
		types = []uint8{t}
	}
	for _, t := range types {
		k := reqKey{p, t, fieldID}
		if required {
			s.st.required[k] = true
		} else {
			delete(s.st.required, k)
		}
	}
	return nil
}

// SetSearchLag makes /search/jql and approximate-count eventually consistent: issues created or
// changed less than d ago are invisible unless listed in reconcileIssues (JIRA-NOTES.md §3.2).
func (s *Sim) SetSearchLag(d time.Duration) { s.searchLag.Store(int64(d)) }

// SetSearchPageBudget makes /search/jql answer, like Jira Cloud, with fewer issues than maxResults
// when they would make the page larger than budget bytes (at least one issue per page), together
// with a nextPageToken: a client that reads one page and stops gets a silently short result.
// Zero turns the cap off.
func (s *Sim) SetSearchPageBudget(budget int) { s.pageBudget.Store(int64(max(budget, 0))) }

// ScanStats reports JQL evaluation work since the last ResetScanStats.
func (s *Sim) ScanStats() ScanStats {
	return ScanStats{
		IssuesScanned:    s.scanned.Load(),
		AggregateAnswers: s.aggAnswers.Load(),
		IndexAnswers:     s.idxAnswers.Load(),
		FullScans:        s.fullScans.Load(),
	}
}

// ResetScanStats zeroes ScanStats.
func (s *Sim) ResetScanStats() {
	s.scanned.Store(0)
	s.aggAnswers.Store(0)
	s.idxAnswers.Store(0)
	s.fullScans.Store(0)
}

// ErrNotFound is wrapped by Go-API errors about missing issues, projects and webhooks.
var ErrNotFound = errors.New("not found")

func clamp01(f float64) float64 {
	if math.IsNaN(f) || f < 0 {
		return 0
	}
	if f > 1 {
		return 1
	}
	return f
}
