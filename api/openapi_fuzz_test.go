package api

import (
	"encoding/json"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzYAMLToJSON: the converter behind /openapi.json never panics, and whatever it accepts comes
// out as valid JSON holding the same data as a plain YAML decode of the input.
func FuzzYAMLToJSON(f *testing.F) {
	for _, seed := range []string{
		string(openAPIYAML), "a: 1\nb: [x, 2.5, true, null]\n", "{}", "[]", "'s'", "a: &x 1\nb: *x\n",
		"a: 1\na: 2\n", "<<: {a: 1}\n", "? [a]\n: 1\n", "t: 2001-12-14t21:59:43.10-05:00\n", "n: .nan\n", "---\na: 1\n---\nb: 2\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		out, err := yamlToJSON(src)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %q from %q", out, src)
		}
		var want any
		if err := yaml.Unmarshal(src, &want); err != nil {
			t.Fatalf("converted %q, which yaml.Unmarshal refuses: %v", src, err)
		}
		wantJSON, err := json.Marshal(want)
		if err != nil {
			return // e.g. a key that is not a string: the converter writes it as one, json cannot
		}
		var a, b any
		if err := json.Unmarshal(out, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(wantJSON, &b); err != nil {
			t.Fatal(err)
		}
		aj, _ := json.Marshal(a)
		bj, _ := json.Marshal(b)
		if string(aj) != string(bj) {
			t.Fatalf("%q converts to %s, yaml.Unmarshal reads %s", src, aj, bj)
		}
	})
}
