package findings

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func validConfig() SyncConfig {
	c := DefaultSyncConfig()
	c.ProjectKey = "SEC"
	c.IssueType = "10005"
	c.FrameworkField = "customfield_10100"
	c.FindingIDField = "customfield_10102"
	c.LinkTemplate = "https://app.example.com/findings/{id}"
	return c
}

func wantFieldError(t *testing.T, err error, field, msg string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a *FieldError (want %s)", err, field)
	}
	if fe.Field != field || !strings.Contains(fe.Message, msg) {
		t.Fatalf("got %q: %q, want field %q containing %q", fe.Field, fe.Message, field, msg)
	}
}

func TestDefaultSyncConfig(t *testing.T) {
	c := DefaultSyncConfig()
	if c.SeverityThreshold != SeverityHigh || !reflect.DeepEqual(c.PushStatuses, []Status{StatusOpen}) ||
		c.TitlePrefix != "[jiraconnect]" || !reflect.DeepEqual(c.Labels, []string{"jiraconnect", "security-finding"}) {
		t.Errorf("defaults: %+v", c)
	}
	want := map[Status]StatusTarget{
		StatusOpen:          {Name: "Open", CategoryKey: "new"},
		StatusTriaged:       {Name: "In Progress", CategoryKey: "indeterminate"},
		StatusResolved:      {Name: "Done", CategoryKey: "done", Resolution: "Done"},
		StatusAccepted:      {Name: "Won't Do", CategoryKey: "done", Resolution: "Won't Do"},
		StatusFalsePositive: {Name: "Cancelled", CategoryKey: "done", Resolution: "Cancelled"},
	}
	if !reflect.DeepEqual(c.StatusMap, want) {
		t.Errorf("status map: %+v", c.StatusMap)
	}
	// Defaults are fresh values: changing one configuration must not change another.
	c.Labels[0] = "x"
	c.StatusMap[StatusOpen] = StatusTarget{}
	if d := DefaultSyncConfig(); d.Labels[0] != "jiraconnect" || d.StatusMap[StatusOpen].Name != "Open" {
		t.Error("defaults are shared")
	}
	// The defaults without project and issue type are incomplete, and only because of them.
	wantFieldError(t, DefaultSyncConfig().Validate(), "finding_sync.project_key", "required")
}

func TestSyncConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*SyncConfig)
		field  string
		msg    string
	}{
		{"valid", func(*SyncConfig) {}, "", ""},
		{"optional fields empty", func(c *SyncConfig) {
			c.FrameworkField, c.FindingIDField, c.LinkTemplate, c.TitlePrefix, c.Labels = "", "", "", "", nil
		}, "", ""},
		{"issue type by name", func(c *SyncConfig) { c.IssueType = "Vulnerability" }, "", ""},
		{"project missing", func(c *SyncConfig) { c.ProjectKey = "" }, "finding_sync.project_key", "required"},
		{"project bad", func(c *SyncConfig) { c.ProjectKey = "1SEC" }, "finding_sync.project_key", "not a Jira project key"},
		{"project with space", func(c *SyncConfig) { c.ProjectKey = "SE C" }, "finding_sync.project_key", "not a Jira project key"},
		{"project underscore ok", func(c *SyncConfig) { c.ProjectKey = "APP_SEC2" }, "", ""},
		{"issue type missing", func(c *SyncConfig) { c.IssueType = " " }, "finding_sync.issue_type", "required"},
		{"issue type newline", func(c *SyncConfig) { c.IssueType = "Bug\n" }, "finding_sync.issue_type", "single line"},
		{"threshold bad", func(c *SyncConfig) { c.SeverityThreshold = "urgent" }, "finding_sync.severity_threshold", "one of"},
		{"push statuses empty", func(c *SyncConfig) { c.PushStatuses = nil }, "finding_sync.push_statuses", "at least one"},
		{"push status bad", func(c *SyncConfig) { c.PushStatuses = []Status{StatusOpen, "new"} }, "finding_sync.push_statuses[1]", "one of"},
		{"push status duplicate", func(c *SyncConfig) { c.PushStatuses = []Status{StatusOpen, StatusTriaged, StatusOpen} }, "finding_sync.push_statuses[2]", "duplicates push_statuses[0]"},
		{"prefix too long", func(c *SyncConfig) { c.TitlePrefix = strings.Repeat("p", MaxTitlePrefixLen+1) }, "finding_sync.title_prefix", "at most 50"},
		{"prefix newline", func(c *SyncConfig) { c.TitlePrefix = "[a]\n" }, "finding_sync.title_prefix", "single line"},
		{"label with space", func(c *SyncConfig) { c.Labels = []string{"ok", "has space"} }, "finding_sync.labels[1]", "not a valid Jira label"},
		{"label empty", func(c *SyncConfig) { c.Labels = []string{""} }, "finding_sync.labels[0]", "empty"},
		{"label too long", func(c *SyncConfig) { c.Labels = []string{strings.Repeat("l", 256)} }, "finding_sync.labels[0]", "not a valid Jira label"},
		{"label astral too long", func(c *SyncConfig) { c.Labels = []string{strings.Repeat("😀", 128)} }, "finding_sync.labels[0]", "not a valid Jira label"},
		{"label duplicate", func(c *SyncConfig) { c.Labels = []string{"a", "b", "a"} }, "finding_sync.labels[2]", "duplicates labels[0]"},
		{"label reserved", func(c *SyncConfig) { c.Labels = []string{"JC-0123"} }, "finding_sync.labels[0]", "reserved"},
		{"too many labels", func(c *SyncConfig) { c.Labels = make([]string, MaxConfigLabels+1) }, "finding_sync.labels", "at most 20"},
		{"framework field bad", func(c *SyncConfig) { c.FrameworkField = "Framework references" }, "finding_sync.framework_field", "custom field id"},
		{"finding id field bad", func(c *SyncConfig) { c.FindingIDField = "customfield_" }, "finding_sync.finding_id_field", "custom field id"},
		{"same field twice", func(c *SyncConfig) { c.FindingIDField = c.FrameworkField }, "finding_sync.finding_id_field", "must differ"},
		{"status map missing entry", func(c *SyncConfig) { delete(c.StatusMap, StatusAccepted) }, "finding_sync.status_map.accepted", "required"},
		{"status map nil", func(c *SyncConfig) { c.StatusMap = nil }, "finding_sync.status_map.open", "required"},
		{"status map unknown key", func(c *SyncConfig) { c.StatusMap["closed"] = StatusTarget{Name: "Closed", CategoryKey: "done"} }, "finding_sync.status_map", `"closed" is not a finding status`},
		{"status name empty", func(c *SyncConfig) { c.StatusMap[StatusTriaged] = StatusTarget{CategoryKey: "indeterminate"} }, "finding_sync.status_map.triaged.name", "required"},
		{"status category bad", func(c *SyncConfig) { c.StatusMap[StatusOpen] = StatusTarget{Name: "Open", CategoryKey: "todo"} }, "finding_sync.status_map.open.category_key", "one of"},
		{"status id bad", func(c *SyncConfig) {
			c.StatusMap[StatusOpen] = StatusTarget{ID: "x1", Name: "Open", CategoryKey: "new"}
		}, "finding_sync.status_map.open.id", "numeric"},
		{"status names ambiguous", func(c *SyncConfig) {
			c.StatusMap[StatusAccepted] = StatusTarget{Name: "done", CategoryKey: "done"}
		}, "finding_sync.status_map.accepted.name", "also the status of resolved"},
		{"status ids ambiguous", func(c *SyncConfig) {
			c.StatusMap[StatusOpen] = StatusTarget{ID: "10000", Name: "Open", CategoryKey: "new"}
			c.StatusMap[StatusTriaged] = StatusTarget{ID: "10000", Name: "In Progress", CategoryKey: "indeterminate"}
		}, "finding_sync.status_map.triaged.id", "also the status of open"},
		{"resolution control", func(c *SyncConfig) {
			c.StatusMap[StatusResolved] = StatusTarget{Name: "Done", CategoryKey: "done", Resolution: "Fixed\n"}
		}, "finding_sync.status_map.resolved.resolution", "single line"},
		{"link http", func(c *SyncConfig) { c.LinkTemplate = "http://app.example.com/f/{id}" }, "finding_sync.link_template", "https"},
		{"link loopback http ok", func(c *SyncConfig) { c.LinkTemplate = "http://localhost:8080/f/{id}" }, "", ""},
		{"link no placeholder", func(c *SyncConfig) { c.LinkTemplate = "https://app.example.com/f/" }, "finding_sync.link_template", "{id}"},
		{"link other placeholder", func(c *SyncConfig) { c.LinkTemplate = "https://app.example.com/{org}/f/{id}" }, "finding_sync.link_template", "other than {id}"},
		{"link id in host", func(c *SyncConfig) { c.LinkTemplate = "https://{id}.example.com/" }, "finding_sync.link_template", "host"},
		{"link javascript", func(c *SyncConfig) { c.LinkTemplate = "javascript:alert({id})" }, "finding_sync.link_template", "absolute URL"},
		{"link credentials", func(c *SyncConfig) { c.LinkTemplate = "https://u:p@app.example.com/f/{id}" }, "finding_sync.link_template", "credentials"},
		{"link relative", func(c *SyncConfig) { c.LinkTemplate = "/findings/{id}" }, "finding_sync.link_template", "absolute URL"},
		{"link query ok", func(c *SyncConfig) { c.LinkTemplate = "https://app.example.com/findings?id={id}#top" }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			wantFieldError(t, c.Validate(), tt.field, tt.msg)
		})
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		threshold Severity
		push      []Status
		sev       Severity
		status    Status
		want      bool
	}{
		{SeverityHigh, []Status{StatusOpen}, SeverityHigh, StatusOpen, true},
		{SeverityHigh, []Status{StatusOpen}, SeverityCritical, StatusOpen, true},
		{SeverityHigh, []Status{StatusOpen}, SeverityMedium, StatusOpen, false},
		{SeverityHigh, []Status{StatusOpen}, SeverityLow, StatusOpen, false},
		{SeverityHigh, []Status{StatusOpen}, SeverityCritical, StatusTriaged, false},
		{SeverityHigh, []Status{StatusOpen, StatusTriaged}, SeverityCritical, StatusTriaged, true},
		{SeverityInfo, []Status{StatusOpen}, SeverityInfo, StatusOpen, true},
		{SeverityCritical, []Status{StatusOpen}, SeverityHigh, StatusOpen, false},
		{SeverityHigh, []Status{StatusOpen}, "bogus", StatusOpen, false},
		{"", []Status{StatusOpen}, SeverityCritical, StatusOpen, false},
		{SeverityLow, nil, SeverityCritical, StatusOpen, false},
	}
	for _, tt := range tests {
		c := validConfig()
		c.SeverityThreshold, c.PushStatuses = tt.threshold, tt.push
		f := validFinding()
		f.Severity, f.Status = tt.sev, tt.status
		if got := c.Matches(f); got != tt.want {
			t.Errorf("threshold %q push %v: Matches(%s/%s) = %v, want %v", tt.threshold, tt.push, tt.sev, tt.status, got, tt.want)
		}
	}
}

func TestParseSyncConfig(t *testing.T) {
	tests := []struct {
		name  string
		raw   string
		check func(t *testing.T, c SyncConfig)
		field string
		msg   string
	}{
		{"empty gives defaults", "", func(t *testing.T, c SyncConfig) {
			if !reflect.DeepEqual(c, DefaultSyncConfig()) {
				t.Errorf("got %+v", c)
			}
		}, "", ""},
		{"null gives defaults", "null", func(t *testing.T, c SyncConfig) {
			if c.TitlePrefix != DefaultTitlePrefix {
				t.Errorf("got %+v", c)
			}
		}, "", ""},
		{"absent fields keep defaults", `{"project_key":"SEC","issue_type":"Bug"}`, func(t *testing.T, c SyncConfig) {
			if c.ProjectKey != "SEC" || c.IssueType != "Bug" || c.TitlePrefix != DefaultTitlePrefix || len(c.Labels) != 2 || c.SeverityThreshold != SeverityHigh {
				t.Errorf("got %+v", c)
			}
		}, "", ""},
		{"explicit empty prefix and labels", `{"title_prefix":"","labels":[]}`, func(t *testing.T, c SyncConfig) {
			if c.TitlePrefix != "" || c.Labels == nil || len(c.Labels) != 0 {
				t.Errorf("got prefix %q labels %#v", c.TitlePrefix, c.Labels)
			}
		}, "", ""},
		{"status map entries merge", `{"status_map":{"open":{"name":"To Do","category_key":"new"}}}`, func(t *testing.T, c SyncConfig) {
			if c.StatusMap[StatusOpen].Name != "To Do" || c.StatusMap[StatusAccepted].Name != "Won't Do" || len(c.StatusMap) != 5 {
				t.Errorf("got %+v", c.StatusMap)
			}
		}, "", ""},
		{"unknown field", `{"project":"SEC"}`, nil, "finding_sync.project", "unknown field"},
		{"wrong type", `{"labels":"a,b"}`, nil, "finding_sync.labels", "an array"},
		{"wrong type string", `{"project_key":7}`, nil, "finding_sync.project_key", "a string"},
		{"wrong type in map", `{"status_map":{"open":"Open"}}`, nil, "finding_sync.status_map.open", "an object"},
		{"not an object", `[1]`, nil, "finding_sync", "JSON object"},
		{"trailing data", `{} {}`, nil, "finding_sync", "data after"},
		{"malformed", `{"project_key":`, nil, "finding_sync", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseSyncConfig([]byte(tt.raw))
			wantFieldError(t, err, tt.field, tt.msg)
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestSyncConfigJSONRoundTrip(t *testing.T) {
	c := validConfig()
	c.StatusMap[StatusOpen] = StatusTarget{ID: "10000", Name: "To Do", CategoryKey: "new"}
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"project_key":"SEC"`, `"severity_threshold":"high"`, `"push_statuses":["open"]`, `"status_map":{"accepted":`, `"category_key":"new"`, `"link_template":"https://app.example.com/findings/{id}"`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("JSON %s lacks %s", raw, key)
		}
	}
	back, err := ParseSyncConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, c)
	}
}

func TestSyncConfigPatch(t *testing.T) {
	base := validConfig()
	tests := []struct {
		name  string
		raw   string
		check func(t *testing.T, c SyncConfig)
		field string
		msg   string
	}{
		{"empty patch changes nothing", `{}`, func(t *testing.T, c SyncConfig) {
			if !reflect.DeepEqual(c, base) {
				t.Errorf("got %+v", c)
			}
		}, "", ""},
		{"scalars", `{"project_key":"APPSEC","severity_threshold":"critical","title_prefix":"[sec]"}`, func(t *testing.T, c SyncConfig) {
			if c.ProjectKey != "APPSEC" || c.SeverityThreshold != SeverityCritical || c.TitlePrefix != "[sec]" || c.IssueType != base.IssueType {
				t.Errorf("got %+v", c)
			}
		}, "", ""},
		{"clear optional field", `{"framework_field":"","link_template":""}`, func(t *testing.T, c SyncConfig) {
			if c.FrameworkField != "" || c.LinkTemplate != "" || c.FindingIDField != base.FindingIDField {
				t.Errorf("got %+v", c)
			}
		}, "", ""},
		{"null means unchanged", `{"framework_field":null}`, func(t *testing.T, c SyncConfig) {
			if c.FrameworkField != base.FrameworkField {
				t.Errorf("got %q", c.FrameworkField)
			}
		}, "", ""},
		{"replace lists", `{"labels":["x"],"push_statuses":["open","triaged"]}`, func(t *testing.T, c SyncConfig) {
			if !reflect.DeepEqual(c.Labels, []string{"x"}) || !reflect.DeepEqual(c.PushStatuses, []Status{StatusOpen, StatusTriaged}) {
				t.Errorf("got %+v", c)
			}
		}, "", ""},
		{"status map entry", `{"status_map":{"false_positive":{"name":"Invalid","category_key":"done"}}}`, func(t *testing.T, c SyncConfig) {
			if c.StatusMap[StatusFalsePositive].Name != "Invalid" || c.StatusMap[StatusResolved].Name != "Done" {
				t.Errorf("got %+v", c.StatusMap)
			}
		}, "", ""},
		{"unknown field", `{"labelz":[]}`, nil, "finding_sync.labelz", "unknown field"},
		{"wrong type", `{"push_statuses":"open"}`, nil, "finding_sync.push_statuses", "an array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseSyncConfigPatch([]byte(tt.raw))
			wantFieldError(t, err, tt.field, tt.msg)
			if tt.check == nil {
				return
			}
			got := p.Apply(base)
			tt.check(t, got)
			if base.Labels[0] != "jiraconnect" || base.StatusMap[StatusFalsePositive].Name != "Cancelled" {
				t.Fatal("Apply modified the original configuration")
			}
		})
	}
	// A patch is validated as part of the whole configuration.
	p, err := ParseSyncConfigPatch([]byte(`{"severity_threshold":"extreme"}`))
	if err != nil {
		t.Fatal(err)
	}
	wantFieldError(t, p.Apply(base).Validate(), "finding_sync.severity_threshold", "one of")
}

func TestFindingURL(t *testing.T) {
	id := uuid.MustParse("6f1c2a9e-3b7d-4c1e-9a55-2d8f0e4b7c11")
	tests := []struct {
		tmpl, want string
		wantErr    bool
	}{
		{"https://app.example.com/findings/{id}", "https://app.example.com/findings/6f1c2a9e-3b7d-4c1e-9a55-2d8f0e4b7c11", false},
		{"https://app.example.com/f/{id}/view?again={id}", "https://app.example.com/f/6f1c2a9e-3b7d-4c1e-9a55-2d8f0e4b7c11/view?again=6f1c2a9e-3b7d-4c1e-9a55-2d8f0e4b7c11", false},
		{"", "", false},
		{"ftp://app.example.com/{id}", "", true},
	}
	for _, tt := range tests {
		c := validConfig()
		c.LinkTemplate = tt.tmpl
		got, err := c.FindingURL(id)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("FindingURL(%q) = %q, %v; want %q (error %v)", tt.tmpl, got, err, tt.want, tt.wantErr)
		}
	}
}
