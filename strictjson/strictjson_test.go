package strictjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/strictjson"
)

type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s is not a duration such as \"24h\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%s is not a duration such as \"24h\"", strconv.Quote(s))
	}
	*d = duration(v)
	return nil
}

type inner struct {
	Cadence duration          `json:"sync_cadence"`
	Size    int               `json:"sample_size"`
	JQL     string            `json:"resolved_jql" text:"multiline"`
	Labels  map[string]string `json:"labels"`
}

type embedded struct {
	ProjectKey *string `json:"project_key"`
}

type request struct {
	Enabled *bool           `json:"enabled"`
	Name    string          `json:"name"`
	Excerpt string          `json:"excerpt" text:"multiline"`
	Refs    []string        `json:"framework_refs"`
	Config  *inner          `json:"config"`
	Raw     json.RawMessage `json:"raw"`
	Any     any             `json:"any"`
	embedded
}

func TestDecodeAccepts(t *testing.T) {
	t.Parallel()
	var r request
	body := `{"enabled":true,"name":"Acme — ünïcode ✓","excerpt":"line 1\n\tline 2\r\n","framework_refs":["A_1"],` +
		`"config":{"sync_cadence":"24h","sample_size":3,"resolved_jql":"labels = x\nORDER BY created"},` +
		`"raw":{"k":[1,2]},"any":{"x":"y"},"project_key":"SEC"}`
	require.NoError(t, strictjson.Decode([]byte(" \n"+body+"\n "), &r))
	require.NotNil(t, r.Enabled)
	assert.True(t, *r.Enabled)
	assert.Equal(t, "Acme — ünïcode ✓", r.Name)
	assert.Equal(t, duration(24*time.Hour), r.Config.Cadence)
	assert.JSONEq(t, `{"k":[1,2]}`, string(r.Raw))
	require.NotNil(t, r.ProjectKey)
	assert.Equal(t, "SEC", *r.ProjectKey)
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body, code, field, message string
	}{
		{"empty", ``, strictjson.CodeInvalidJSON, "", "empty"},
		{"array", `[1]`, strictjson.CodeInvalidJSON, "", "must be a JSON object"},
		{"trailing data", `{"name":"a"} {}`, strictjson.CodeInvalidJSON, "", "data after the JSON object"},
		{"form feed after the object", "{}\f", strictjson.CodeInvalidJSON, "", "data after the JSON object"},
		{"form feed before the object", "\f{}", strictjson.CodeInvalidJSON, "", "JSON object"},
		{"truncated", `{"name":"a"`, strictjson.CodeInvalidJSON, "", "malformed JSON"},
		{"string as boolean", `{"enabled":"true"}`, strictjson.CodeInvalidField, "enabled", "enabled: must be a boolean"},
		{"string false as boolean", `{"enabled":"false"}`, strictjson.CodeInvalidField, "enabled", "must be a boolean"},
		{"number as boolean", `{"enabled":0}`, strictjson.CodeInvalidField, "enabled", "must be a boolean"},
		{"number in string array", `{"framework_refs":["a",1]}`, strictjson.CodeInvalidField, "framework_refs[1]", "must be a string"},
		{"fraction as integer", `{"config":{"sample_size":1.5}}`, strictjson.CodeInvalidField, "config.sample_size", "must be an integer"},
		{"duration syntax", `{"config":{"sync_cadence":"soon"}}`, strictjson.CodeInvalidField, "config.sync_cadence", `config.sync_cadence: "soon" is not a duration`},
		{"duration kind", `{"config":{"sync_cadence":5}}`, strictjson.CodeInvalidField, "config.sync_cadence", "not a duration"},
		{"unknown", `{"nope":1}`, strictjson.CodeUnknownField, "nope", "nope: unknown field"},
		{"unknown nested", `{"config":{"nope":1}}`, strictjson.CodeUnknownField, "config.nope", "config.nope: unknown field"},
		{"case differs", `{"Name":"x"}`, strictjson.CodeUnknownField, "Name", "unknown field"},
		{"duplicate", `{"name":"a","name":"b"}`, strictjson.CodeInvalidField, "name", "name: appears more than once"},
		{"invalid UTF-8", "{\"name\":\"a\xffb\"}", strictjson.CodeInvalidField, "name", "must be valid UTF-8"},
		{"invalid UTF-8 in key", "{\"n\xffe\":\"a\"}", strictjson.CodeInvalidField, "", "UTF-8"},
		{"lone surrogate", `{"name":"\ud800"}`, strictjson.CodeInvalidField, "name", "must be valid UTF-8"},
		{"NUL escape", `{"name":"a\u0000b"}`, strictjson.CodeInvalidField, "name", "name: must not contain NUL"},
		{"NUL in multiline", `{"excerpt":"a\u0000b"}`, strictjson.CodeInvalidField, "excerpt", "NUL"},
		{"NUL in raw JSON", `{"raw":{"k":"\u0000"}}`, strictjson.CodeInvalidField, "raw.k", "NUL"},
		{"NUL in any", `{"any":["\u0000"]}`, strictjson.CodeInvalidField, "any[0]", "NUL"},
		{"NUL in key", `{"config":{"labels":{"a\u0000":"b"}}}`, strictjson.CodeInvalidField, "config.labels", "member names must not contain NUL"},
		{"CR in single line", `{"name":"a\rb"}`, strictjson.CodeInvalidField, "name", "single line"},
		{"LF in single line", `{"name":"a\nb"}`, strictjson.CodeInvalidField, "name", "single line"},
		{"tab in single line", `{"name":"a\tb"}`, strictjson.CodeInvalidField, "name", "single line"},
		{"escape in single line", `{"name":"a\u001bb"}`, strictjson.CodeInvalidField, "name", "U+001B"},
		{"DEL", `{"framework_refs":["a\u007f"]}`, strictjson.CodeInvalidField, "framework_refs[0]", "U+007F"},
		{"C1 control", `{"name":"a\u0085"}`, strictjson.CodeInvalidField, "name", "U+0085"},
		{"escape in multiline", `{"excerpt":"a\u001bb"}`, strictjson.CodeInvalidField, "excerpt", "other than tab and line breaks"},
		{"control in map value", `{"config":{"labels":{"a":"b\nc"}}}`, strictjson.CodeInvalidField, "config.labels.a", "single line"},
		{"control in map key", `{"config":{"labels":{"a\nb":"c"}}}`, strictjson.CodeInvalidField, "config.labels", "member names must be a single line"},
		{"control in any", `{"any":{"k":"a\u0007"}}`, strictjson.CodeInvalidField, "any.k", "U+0007"},
		{"control in embedded field", `{"project_key":"S\nEC"}`, strictjson.CodeInvalidField, "project_key", "single line"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r request
			err := strictjson.Decode([]byte(tc.body), &r)
			var se *strictjson.Error
			require.True(t, errors.As(err, &se), "want *strictjson.Error, got %v", err)
			assert.Equal(t, tc.code, se.Code)
			assert.Equal(t, tc.field, se.Field)
			assert.Contains(t, se.Message, tc.message)
		})
	}
}

func TestWithPrefix(t *testing.T) {
	t.Parallel()
	var r request
	err := strictjson.Decode([]byte(`{"enabled":"true"}`), &r)
	var se *strictjson.Error
	require.ErrorAs(t, err, &se)
	p := se.WithPrefix("finding_sync")
	assert.Equal(t, "finding_sync.enabled", p.Field)
	assert.Equal(t, "finding_sync.enabled: must be a boolean", p.Message)
	assert.Equal(t, "enabled", se.Field, "WithPrefix must not change the original")

	whole := (&strictjson.Error{Code: strictjson.CodeInvalidJSON, Message: "request body must be a JSON object"}).WithPrefix("finding_sync")
	assert.Equal(t, "finding_sync", whole.Field)
}

// FuzzDecode: whatever the input, Decode either fails with an *Error or yields a value whose
// strings obey the rules it promises, and it is never more lenient than encoding/json.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"name":"a"}`, `{"enabled":true,"config":{"sync_cadence":"1h"}}`, `{"name":"\u0000"}`,
		"{\"name\":\"\xff\"}", `{"any":{"a":["\n"]}}`, `{"raw":[1,{"x":null}]}`, `{"name":"a","name":"a"}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r request
		err := strictjson.Decode(data, &r)
		if err != nil {
			var se *strictjson.Error
			if !errors.As(err, &se) {
				t.Fatalf("error is not *strictjson.Error: %T %v", err, err)
			}
			if se.Message == "" || se.Code == "" {
				t.Fatalf("error without code or message: %+v", se)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		for _, s := range append([]string{r.Name, r.Excerpt}, r.Refs...) {
			for _, c := range s {
				if c == 0 || (c == 0xFFFD && !containsReplacement(data)) {
					t.Fatalf("accepted forbidden text %q", s)
				}
			}
		}
	})
}

// containsReplacement reports whether the input itself spells U+FFFD, the only way an accepted
// value may hold one (the decoder must never substitute it for invalid input).
func containsReplacement(data []byte) bool {
	return bytes.Contains(data, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(data), []byte(`\ufffd`))
}
