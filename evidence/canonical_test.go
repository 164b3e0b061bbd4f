package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCanonicalizeValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"sorts keys and drops whitespace", "{ \"b\" : 1,\n\t\"a\" : [ true , false , null ], \"c\":\"x\" }", `{"a":[true,false,null],"b":1,"c":"x"}`},
		{"empty containers", " \r\n\t{ } ", `{}`},
		{"empty array", "[ ]", `[]`},
		{"nested objects sorted at every level", `{"z":{"y":1,"x":{"b":2,"a":1}},"a":[{"d":0,"c":0}]}`, `{"a":[{"c":0,"d":0}],"z":{"x":{"a":1,"b":2},"y":1}}`},
		{"array order is kept", `[3,1,2]`, `[3,1,2]`},
		{"negative zero becomes zero", `-0`, `0`},
		{"negative integer", `-42`, `-42`},
		{"largest safe integer", `9007199254740991`, `9007199254740991`},
		{"smallest safe integer", `-9007199254740991`, `-9007199254740991`},
		{"short escapes kept, solidus unescaped", `"\u0041\/\"\\\b\f\n\r\t"`, `"A/\"\\\b\f\n\r\t"`},
		{"other control characters as lower-case \\u00xx", `"\u0001\u001F\u000b"`, `"\u0001\u001f\u000b"`},
		{"DEL is not escaped", `"\u007f"`, "\"\x7f\""},
		{"html characters and line separators are literal", `"\u003c\u003e\u0026\u2028\u2029"`, "\"<>&\u2028\u2029\""},
		{"surrogate pair decoded to UTF-8", `"\ud83d\ude00"`, "\"\U0001F600\""},
		{"raw UTF-8 kept", "\"caf\u00e9 \u20ac\"", "\"caf\u00e9 \u20ac\""},
		{"U+FFFD itself is valid", "\"\ufffd\"", "\"\ufffd\""},
		{"literals", `[true,false,null]`, `[true,false,null]`},
		// Keys sort by UTF-16 code units, as RFC 8785 section 3.2.3 specifies: the emoji (surrogate
		// 0xD83D) sorts before U+FB33 even though its code point is larger.
		{
			"keys sorted by UTF-16 code units",
			`{"\u20ac":1,"\r":2,"\ufb33":3,"1":4,"\ud83d\ude00":5,"\u0080":6,"\u00f6":7,"":8}`,
			"{\"\":8,\"\\r\":2,\"1\":4,\"\u0080\":6,\"\u00f6\":7,\"\u20ac\":1,\"\U0001F600\":5,\"\ufb33\":3}",
		},
		{"depth 64 is allowed", strings.Repeat("[", 64) + strings.Repeat("]", 64), strings.Repeat("[", 64) + strings.Repeat("]", 64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tt.in))
			if err != nil {
				t.Fatalf("Canonicalize(%q): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Fatalf("Canonicalize(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			again, err := Canonicalize(got)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("not idempotent: %q -> %q (%v)", got, again, err)
			}
		})
	}
}

func TestCanonicalizeInvalid(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		problem string // substring of the CanonicalError problem
	}{
		{"empty input", ``, "unexpected end of input"},
		{"only whitespace", "  \n", "unexpected end of input"},
		{"duplicate key", `{"a":1,"a":2}`, `duplicate object key "a"`},
		{"duplicate key after unescaping", `{"a":1,"\u0061":2}`, `duplicate object key "a"`},
		{"nested duplicate key", `{"x":{"k":1,"k":1}}`, "duplicate object key"},
		{"fraction", `1.0`, "only integers"},
		{"exponent", `1e3`, "only integers"},
		{"upper-case exponent", `[2E1]`, "only integers"},
		{"leading zero", `01`, "unexpected data after"},
		{"lone minus", `-`, "missing digits"},
		{"minus then letter", `-a`, "missing digits"},
		{"plus sign", `+1`, "unexpected character"},
		{"integer too large", `9007199254740992`, "outside the range"},
		{"integer too small", `-9007199254740992`, "outside the range"},
		{"integer overflowing uint64", `123456789012345678901234567890`, "outside the range"},
		{"trailing comma in array", `[1,]`, "unexpected character"},
		{"trailing comma in object", `{"a":1,}`, "expected a string object key"},
		{"missing colon", `{"a" 1}`, "expected ':'"},
		{"non-string key", `{1:2}`, "expected a string object key"},
		{"missing comma", `[1 2]`, "expected ',' or ']'"},
		{"unterminated array", `[1`, "unexpected end of input in array"},
		{"unterminated object", `{"a":1`, "unexpected end of input in object"},
		{"unterminated string", `"abc`, "unterminated string"},
		{"lone high surrogate", `"\ud800"`, "lone high surrogate"},
		{"lone low surrogate", `"\udc00"`, "lone low surrogate"},
		{"high surrogate then non-surrogate", `"\ud800\u0041"`, "not followed by a low surrogate"},
		{"short unicode escape", `"\u12"`, "invalid \\u escape"},
		{"bad hex in unicode escape", `"\u12g4"`, "invalid \\u escape"},
		{"unknown escape", `"\x41"`, "invalid escape"},
		{"escape at end of input", `"\`, "unterminated escape"},
		{"raw control character", "\"a\x01b\"", "raw control character"},
		{"raw newline in string", "\"a\nb\"", "raw control character"},
		{"invalid UTF-8", "\"\xff\"", "invalid UTF-8"},
		{"UTF-8 encoded surrogate", "\"\xed\xa0\x80\"", "invalid UTF-8"},
		{"truncated literal", `tru`, "invalid literal"},
		{"misspelt literal", `nul1`, "invalid literal"},
		{"trailing data", `{"a":1}}`, "unexpected data after"},
		{"two values", `1 2`, "unexpected data after"},
		{"byte order mark", "\ufeff{}", "unexpected character"},
		{"NaN", `NaN`, "unexpected character"},
		{"depth 65", strings.Repeat("[", 65) + strings.Repeat("]", 65), "nesting deeper than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tt.in))
			if err == nil {
				t.Fatalf("Canonicalize(%q) = %q, want an error", tt.in, got)
			}
			var ce *CanonicalError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *CanonicalError", err)
			}
			if !strings.Contains(ce.Problem, tt.problem) {
				t.Fatalf("problem %q does not mention %q", ce.Problem, tt.problem)
			}
			if ce.Offset < 0 || ce.Offset > len(tt.in) {
				t.Fatalf("offset %d outside the input (len %d)", ce.Offset, len(tt.in))
			}
		})
	}
}

// TestCanonicalMatchesEncodingJSON checks that canonical output means the same as the input, by
// the standard library's reading of both.
func TestCanonicalMatchesEncodingJSON(t *testing.T) {
	docs := []string{
		`{"summary":"Fix <script> & \"quotes\"","n":-0,"list":[1,{"b":null,"a":"\u00e9"}]}`,
		`{"keys":["SEC-2","SEC-10"],"empty":false}`,
		`"\ud834\udd1e\u2028"`,
	}
	for _, doc := range docs {
		out, err := Canonicalize([]byte(doc))
		if err != nil {
			t.Fatalf("Canonicalize(%q): %v", doc, err)
		}
		var a, b any
		if err := json.Unmarshal([]byte(doc), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("canonical output %q is not JSON: %v", out, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("meaning changed:\n in %#v\nout %#v", a, b)
		}
	}
}

// FuzzCanonical checks, for arbitrary input, that Canonicalize never panics; that whatever it
// accepts is valid JSON; that its output is itself canonical (decoding and re-encoding it yields
// identical bytes); and that the output means the same as the input to encoding/json.
func FuzzCanonical(f *testing.F) {
	seeds := []string{
		`{"b":1,"a":[true,false,null]}`, `-0`, `"\ud83d\ude00"`, `"\u0000\u001f\\\/"`,
		`{"a":1,"a":2}`, `1.5`, `[[[[]]]]`, "\"\xff\"", `{"\ue000":1,"\ud83d\ude00":2}`,
		`{"project_count":42}`, `9007199254740991`, `"\ud800"`, " [ 1 , 2 ] ",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Canonicalize(data)
		if err != nil {
			var ce *CanonicalError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *CanonicalError", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if !json.Valid(out) {
			t.Fatalf("produced invalid JSON %q from %q", out, data)
		}
		again, err := Canonicalize(out)
		if err != nil {
			t.Fatalf("canonical output %q rejected: %v", out, err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("re-encoding changed the bytes:\n first %q\nsecond %q", out, again)
		}
		var a, b any
		if err := json.Unmarshal(data, &a); err != nil {
			t.Fatalf("encoding/json rejects accepted input %q: %v", data, err)
		}
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("encoding/json rejects output %q: %v", out, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("meaning changed for %q:\n in %#v\nout %#v", data, a, b)
		}
	})
}
