package jira

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCountObjects(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       int
		wantErr    string
	}{
		{"empty array", `[]`, 0, ""},
		{"two projects", `[{"id":"10000","key":"EX"},{"id":"10001","key":"ABC","avatarUrls":{"48x48":"x"}}]`, 2, ""},
		{"nested arrays and objects", `[{"a":[{"b":[1,2,{}]}]},{}]` + "\n", 2, ""},
		{"whitespace", " \n[ {} ,\t{} ]\n", 2, ""},
		{"null", `null`, 0, "want a JSON array, got null"},
		{"object", `{"values":[]}`, 0, "want a JSON array, got an object"},
		{"string", `"[{}]"`, 0, "want a JSON array, got string"},
		{"number element", `[{}, 3]`, 0, "element 1 is number, not an object"},
		{"null element", `[null]`, 0, "element 0 is null, not an object"},
		{"array element", `[{}, {}, []]`, 0, "element 2 is an array, not an object"},
		{"truncated", `[{"id":"1"},{"id":"2"`, 0, "not valid JSON"},
		{"trailing garbage", `[{}] x`, 0, "not valid JSON"},
		{"two values", `[{}] [{}]`, 0, "not valid JSON"},
		{"trailing comma", `[{},]`, 0, "not valid JSON"},
		{"html error page", `<html>Service Unavailable</html>`, 0, "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := countObjects([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("countObjects(%q) = %d, %v; want error %q", tc.body, n, err, tc.wantErr)
				}
				return
			}
			if err != nil || n != tc.want {
				t.Fatalf("countObjects(%q) = %d, %v; want %d", tc.body, n, err, tc.want)
			}
		})
	}
}

// TestDataCenterProjectCountMalformed: a Data Center project list that is not an array of
// objects is a malformed response, never a (smaller) count.
func TestDataCenterProjectCountMalformed(t *testing.T) {
	for _, body := range []string{`null`, `{"errorMessages":[]}`, `[{"id":"1"},`, `[{"id":"1"}, "2"]`, ` `} {
		fs := newFixtureServer(t, map[string]canned{"GET /rest/api/2/project": {body: body}})
		dc := newTestClient(t, DataCenter, fs.URL, nil)
		n, err := dc.ProjectCount(context.Background())
		var jerr *Error
		if !errors.As(err, &jerr) || jerr.Kind != KindMalformedResponse {
			t.Errorf("body %q: ProjectCount = %d, %v; want a %s error", body, n, err, KindMalformedResponse)
		}
	}
}

// FuzzCountObjects checks countObjects against encoding/json: whatever it counts, encoding/json
// decodes as an array of exactly that many objects, so the faster path is never more lenient.
func FuzzCountObjects(f *testing.F) {
	for _, s := range []string{`[]`, `[{}]`, `[{"a":1},{"b":[{}]}]`, `[1]`, `null`, `[{},]`, `[{"a":"\u00e9"}]`, `[{"a":"\ud800"}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := countObjects(body)
		if err != nil {
			return
		}
		var objs []map[string]json.RawMessage
		if jerr := json.Unmarshal(body, &objs); jerr != nil {
			t.Fatalf("countObjects(%q) = %d, but encoding/json rejects it: %v", body, n, jerr)
		}
		if len(objs) != n {
			t.Fatalf("countObjects(%q) = %d, encoding/json finds %d", body, n, len(objs))
		}
		for i, o := range objs {
			if o == nil {
				t.Fatalf("countObjects(%q) counted element %d, which encoding/json decodes as null", body, i)
			}
		}
		if strings.TrimSpace(string(body)) == "" {
			t.Fatalf("countObjects accepted a blank body")
		}
	})
}
