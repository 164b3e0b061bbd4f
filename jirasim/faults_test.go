package jirasim_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

func TestFaultKinds(t *testing.T) {
	f := newCloud(t, jirasim.Options{RandSeed: 7})
	myself := f.v3("myself")

	// Latency is recorded (the test asserts the fault fired, not a duration).
	if err := f.srv.SetFault("GET /rest/api/*/myself", jirasim.Fault{Latency: time.Millisecond, Times: 1}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, call(t, "GET", myself, f.a, nil), 200)
	if recs := f.srv.Requests(); recs[len(recs)-1].Fault != "latency" {
		t.Fatalf("latency not recorded: %+v", recs[len(recs)-1])
	}
	if len(f.srv.Faults()) != 0 {
		t.Fatal("Times=1 fault still installed")
	}

	// 5xx at rate 1.
	if err := f.srv.SetFault("* /rest/api/3/**", jirasim.Fault{ErrorRate: 1, ErrorStatus: 502, Times: 2}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, call(t, "GET", myself, f.a, nil), 502)
	wantStatus(t, call(t, "GET", myself, f.a, nil), 502)
	wantStatus(t, call(t, "GET", myself, f.a, nil), 200)

	// 503 with Retry-After.
	if err := f.srv.SetFault("GET /rest/api/3/myself", jirasim.Fault{Unavailable: true, UnavailableRetryAfter: 7, Times: 1}); err != nil {
		t.Fatal(err)
	}
	r := call(t, "GET", myself, f.a, nil)
	wantStatus(t, r, 503)
	if r.header.Get("Retry-After") != "7" {
		t.Fatalf("503 headers %v", r.header)
	}

	// Token bucket: burst 2, then 429 with Retry-After and RateLimit-Reason; refills with the clock.
	if err := f.srv.SetFault("POST /rest/api/3/search/approximate-count", jirasim.Fault{RateLimit: &jirasim.RateLimit{Rate: 0.5, Burst: 2}}); err != nil {
		t.Fatal(err)
	}
	count := func() resp {
		return call(t, "POST", f.v3("search/approximate-count"), f.a, map[string]string{"jql": "project = SEC"})
	}
	wantStatus(t, count(), 200)
	wantStatus(t, count(), 200)
	r = count()
	wantStatus(t, r, 429)
	if r.header.Get("Retry-After") != "2" || r.header.Get("RateLimit-Reason") != "jira-burst-based" || r.header.Get("X-RateLimit-Reset") == "" {
		t.Fatalf("429 headers %v", r.header)
	}
	f.srv.AdvanceClock(2 * time.Second)
	wantStatus(t, count(), 200)
	wantStatus(t, count(), 429)
	if err := f.srv.SetFault("POST /rest/api/3/search/approximate-count", jirasim.Fault{RateLimit: &jirasim.RateLimit{Rate: 1, Burst: 0, RetryAfter: 3, BetaHeaders: true, Reason: "jira-quota-tenant-based"}}); err != nil {
		t.Fatal(err)
	}
	r = count()
	wantStatus(t, r, 429)
	if r.header.Get("Beta-Retry-After") != "3" || r.header.Get("Retry-After") != "" || r.header.Get("X-Beta-Ratelimit-Reason") != "jira-quota-tenant-based" {
		t.Fatalf("beta 429 headers %v", r.header)
	}
	f.srv.ClearFault("POST /rest/api/3/search/approximate-count")
	wantStatus(t, count(), 200)

	// Truncated and malformed bodies keep the status but cannot be decoded.
	for _, fl := range []jirasim.Fault{{TruncateBody: true, Times: 1}, {MalformedBody: true, Times: 1}} {
		if err := f.srv.SetFault("GET /rest/api/3/myself", fl); err != nil {
			t.Fatal(err)
		}
		r := call(t, "GET", myself, f.a, nil)
		wantStatus(t, r, 200)
		var v map[string]any
		if err := json.Unmarshal(r.body, &v); err == nil {
			t.Fatalf("body %q decoded despite fault %+v", r.body, fl)
		}
	}

	// Connection reset: the client sees a transport error and nothing is applied.
	if err := f.srv.SetFault("POST /rest/api/3/issue", jirasim.Fault{ResetConnection: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := tryCall("POST", f.v3("issue"), f.a, createBody(nil)); err == nil {
		t.Fatal("reset connection produced a response")
	}
	if f.srv.IssueCount() != 0 {
		t.Fatal("reset request was applied")
	}

	// Commit then drop: the issue exists although the client saw no response.
	if err := f.srv.SetFault("POST /rest/api/3/issue", jirasim.Fault{CommitThenDrop: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := tryCall("POST", f.v3("issue"), f.a, createBody(nil)); err == nil {
		t.Fatal("commit-then-drop produced a response")
	}
	if _, ok := f.srv.Issue("SEC-1"); !ok {
		t.Fatal("commit-then-drop did not commit the create")
	}
	if err := f.srv.SetFault("POST /rest/api/3/issue/*/transitions", jirasim.Fault{CommitThenDrop: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := tryCall("POST", f.v3("issue/SEC-1/transitions"), f.a, map[string]any{"transition": map[string]string{"id": jirasim.TransitionStartWork}}); err == nil {
		t.Fatal("commit-then-drop transition produced a response")
	}
	if is, _ := f.srv.Issue("SEC-1"); is.Status != "In Progress" {
		t.Fatalf("transition not committed: %s", is.Status)
	}

	// Faults also match the 3LO gateway path.
	tok := oauthLogin(t, f.srv, allScopes)["access_token"].(string)
	if err := f.srv.SetFault("GET /rest/api/3/myself", jirasim.Fault{ErrorRate: 1, Times: 1}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, call(t, "GET", f.srv.GatewayURL()+"/rest/api/3/myself", bearer(tok), nil), 500)

	if err := f.srv.SetFault("bad route", jirasim.Fault{}); err == nil {
		t.Fatal("route without a leading / accepted")
	}
}

func TestFaultErrorRateIsDeterministic(t *testing.T) {
	run := func() string {
		f := newCloud(t, jirasim.Options{RandSeed: 42})
		if err := f.srv.SetFault("GET /rest/api/3/myself", jirasim.Fault{ErrorRate: 0.5}); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for range 40 {
			if call(t, "GET", f.v3("myself"), f.a, nil).status == 200 {
				b.WriteByte('.')
			} else {
				b.WriteByte('x')
			}
		}
		return b.String()
	}
	a, b := run(), run()
	if a != b || !strings.Contains(a, "x") || !strings.Contains(a, ".") {
		t.Fatalf("runs differ or degenerate: %s vs %s", a, b)
	}
}

func TestRequestLog(t *testing.T) {
	f := newCloud(t, jirasim.Options{RequestLogSize: 16})
	tok := oauthLogin(t, f.srv, allScopes)["access_token"].(string)
	f.srv.ResetRequests()
	pat := f.srv.PAT("admin")
	call(t, "GET", f.v3("myself"), f.a, nil)
	call(t, "GET", f.v3("myself"), noAuth, nil)
	call(t, "GET", f.v3("myself"), bearer(tok), nil)
	call(t, "GET", f.v3("myself"), bearer(pat), nil)
	call(t, "GET", f.v3("myself"), bearer("junk"), nil)
	call(t, "GET", f.srv.GatewayURL()+"/rest/api/3/project/search?maxResults=1", bearer(tok), nil)
	recs := f.srv.Requests()
	want := []struct {
		auth   jirasim.AuthKind
		status int
	}{{jirasim.AuthBasic, 200}, {jirasim.AuthNone, 401}, {jirasim.AuthBearerOAuth, 401}, {jirasim.AuthBearerPAT, 401}, {jirasim.AuthInvalid, 401}, {jirasim.AuthBearerOAuth, 200}}
	if len(recs) != len(want) {
		t.Fatalf("%d records", len(recs))
	}
	for i, w := range want {
		if recs[i].Auth != w.auth || recs[i].Status != w.status {
			t.Fatalf("record %d = %+v, want %v/%d", i, recs[i], w.auth, w.status)
		}
	}
	if recs[5].Operation != jirasim.OpProjectSearch || recs[5].Query != "maxResults=1" {
		t.Fatalf("gateway record %+v", recs[5])
	}
	if c := f.srv.OperationCount(jirasim.OpMyself); c != 5 {
		t.Fatalf("myself count %d", c)
	}

	// Concurrent hammering stays consistent and the ring stays bounded.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := tryCall("GET", f.v3("myself"), f.a, nil); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n := len(f.srv.Requests()); n != 16 {
		t.Fatalf("ring holds %d, want 16", n)
	}
	if c := f.srv.OperationCount(jirasim.OpMyself); c != 85 {
		t.Fatalf("myself count %d, want 85", c)
	}
	// Secrets passed in query strings are not recorded.
	call(t, "GET", f.srv.URL+"/authorize?client_id=jirasim-client&code=abc", noAuth, nil)
	recs = f.srv.Requests()
	if q := recs[len(recs)-1].Query; strings.Contains(q, "abc") {
		t.Fatalf("recorded secret in query %q", q)
	}
	f.srv.ResetRequests()
	if len(f.srv.Requests()) != 0 || len(f.srv.OperationCounts()) != 0 {
		t.Fatal("reset did not clear")
	}
}

func TestControlAPI(t *testing.T) {
	srv := startSim(t, jirasim.Options{ControlToken: "ctl"})
	ctl := func(r *http.Request) { r.Header.Set("X-Sim-Control-Token", "ctl") }
	wantStatus(t, call(t, "GET", srv.URL+"/_sim/info", noAuth, nil), 401)
	wantStatus(t, call(t, "POST", srv.URL+"/_sim/seed", ctl, map[string]any{"seed": 3, "projects": 5, "issues": 300, "securityShare": 0.2}), 200)
	info := call(t, "GET", srv.URL+"/_sim/info", ctl, nil).json(t)
	if info["projects"].(float64) != 5 || info["issues"].(float64) != 300 {
		t.Fatalf("info %v", info)
	}
	tok := call(t, "POST", srv.URL+"/_sim/credentials/api-token", ctl, map[string]string{"email": "bot@example.com"}).json(t)["token"].(string)
	a := basic("bot@example.com", tok)
	wantStatus(t, call(t, "POST", srv.URL+"/_sim/issues", ctl, map[string]any{"project": "SEC", "summary": "from control", "status": "In Progress"}), 201)
	tr := call(t, "POST", srv.URL+"/_sim/issues/SEC-"+itoa(srv, "SEC")+"/transition", ctl, map[string]string{"status": "Done"})
	wantStatus(t, tr, 200)
	if tr.json(t)["resolution"] != "Done" {
		t.Fatalf("transition via control %s", tr.body)
	}
	wantStatus(t, call(t, "PUT", srv.URL+"/_sim/faults", ctl, map[string]any{"route": "GET /rest/api/3/myself", "fault": map[string]any{"unavailable": true, "times": 1}, "latency": "1ms"}), 200)
	wantStatus(t, call(t, "GET", srv.URL+"/rest/api/3/myself", a, nil), 503)
	wantStatus(t, call(t, "GET", srv.URL+"/rest/api/3/myself", a, nil), 200)
	reqs := call(t, "GET", srv.URL+"/_sim/requests?operation="+jirasim.OpMyself, ctl, nil)
	var list []jirasim.RequestRecord
	decodeInto(t, reqs, &list)
	if len(list) != 2 || list[0].Status != 503 {
		t.Fatalf("requests via control %+v", list)
	}
	wantStatus(t, call(t, "POST", srv.URL+"/_sim/clock/advance", ctl, map[string]string{"by": "2h"}), 200)
	wantStatus(t, call(t, "GET", srv.URL+"/_sim/issues/NOPE-1", ctl, nil), 404)
	wantStatus(t, call(t, "GET", srv.URL+"/_sim/nope", ctl, nil), 404)
}

// itoa returns the number of the newest issue in a project.
func itoa(srv *jirasim.Server, key string) string {
	p, _ := srv.GetProject(key)
	return strconv.Itoa(p.IssueCount)
}

// A rate limit on simulated time refills only as the simulator's clock is advanced: wall time
// passing between requests (a slow machine) gives no budget back, so a test sees the limit
// whatever its machine's speed. A limit on the simulator's clock refills with wall time too.
func TestRateLimitOnSimulatedTime(t *testing.T) {
	var mu sync.Mutex
	wall := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	f := newCloud(t, jirasim.Options{RandSeed: 7, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return wall
	}})
	passes := func(d time.Duration) {
		mu.Lock()
		wall = wall.Add(d)
		mu.Unlock()
	}
	const route = "POST /rest/api/3/search/approximate-count"
	count := func() resp {
		return call(t, "POST", f.v3("search/approximate-count"), f.a, map[string]string{"jql": "project = SEC"})
	}

	if err := f.srv.SetFault(route, jirasim.Fault{RateLimit: &jirasim.RateLimit{Rate: 1, Burst: 2, SimulatedTime: true}}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, count(), 200)
	wantStatus(t, count(), 200)
	wantStatus(t, count(), 429)
	passes(time.Hour)
	wantStatus(t, count(), 429)
	f.srv.AdvanceClock(time.Second)
	wantStatus(t, count(), 200)
	wantStatus(t, count(), 429)

	if err := f.srv.SetFault(route, jirasim.Fault{RateLimit: &jirasim.RateLimit{Rate: 1, Burst: 2}}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, count(), 200)
	wantStatus(t, count(), 200)
	wantStatus(t, count(), 429)
	passes(time.Hour)
	wantStatus(t, count(), 200)
}
