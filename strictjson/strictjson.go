// Package strictjson decodes untrusted JSON request bodies strictly, and reports every problem as
// an *Error naming the field as the client spelled it ("config.sync_cadence", "framework_refs[2]").
//
// Strict means: one JSON object and nothing after it; no unknown, duplicate or differently cased
// member names; values of exactly the declared JSON kind ("true" is not a boolean, 0 is not one
// either); valid UTF-8 without lone surrogates; no NUL anywhere; and no control characters in
// string fields unless the field is tagged `text:"multiline"`, which admits tab, line feed and
// carriage return and nothing else. Every check runs before the caller sees the value, so a
// handler that decodes first and writes afterwards can never store half-checked input.
//
// Decoding is done by github.com/go-json-experiment/json, the mirror of encoding/json/v2, whose
// errors carry the JSON Pointer of the offending value; this package turns them into field names
// and plain sentences, and adds the text rules that JSON itself allows but no field of ours wants.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Error codes, stable for programs.
const (
	// CodeInvalidJSON: the body is not one well-formed JSON object.
	CodeInvalidJSON = "invalid_json"
	// CodeUnknownField: a member the target does not declare.
	CodeUnknownField = "unknown_field"
	// CodeInvalidField: a member whose value is of the wrong kind or holds forbidden text.
	CodeInvalidField = "invalid_field"
)

// Error is a decoding failure. Field is empty when the body as a whole is at fault.
type Error struct {
	Code    string
	Field   string
	Message string
}

func (e *Error) Error() string { return e.Message }

// WithPrefix returns a copy of e whose field is nested under prefix ("finding_sync" turns
// "project_key" into "finding_sync.project_key", and a whole-body error into one about prefix).
func (e *Error) WithPrefix(prefix string) *Error {
	out := *e
	switch {
	case prefix == "":
	case e.Field == "":
		out.Field = prefix
		out.Message = prefix + ": " + e.Message
	default:
		out.Field = prefix + "." + e.Field
		out.Message = prefix + "." + e.Message
	}
	return &out
}

// jsonSpace is the whitespace RFC 8259 allows around and between tokens.
const jsonSpace = " \t\n\r"

// MultilineTag is the struct tag that admits tab, line feed and carriage return in a string field.
const MultilineTag = `text:"multiline"`

// Decode decodes data, which must be exactly one JSON object, into dst (a non-nil pointer).
// The returned error is always an *Error.
func Decode(data []byte, dst any) error {
	// JSON's whitespace is space, tab, line feed and carriage return; bytes.TrimSpace would also
	// take form feeds and Unicode spaces, which JSON does not allow around a value.
	trimmed := bytes.Trim(data, jsonSpace)
	if len(trimmed) == 0 {
		return &Error{Code: CodeInvalidJSON, Message: "request body is empty; expected a JSON object"}
	}
	if trimmed[0] != '{' {
		return &Error{Code: CodeInvalidJSON, Message: "request body must be a JSON object"}
	}
	if err := scanText(trimmed); err != nil {
		return err
	}
	if err := jsonv2.Unmarshal(trimmed, dst, jsonv2.RejectUnknownMembers(true)); err != nil {
		return translate(err)
	}
	return checkStrings(reflect.ValueOf(dst), "", false)
}

// scanText walks every token once and rejects NUL in any string, member names included, with the
// field it is in. It runs before decoding so that values kept as raw JSON (json.RawMessage, any)
// are covered too: Postgres refuses \u0000 in text and jsonb, and no field of ours has a use for
// it. Syntax, UTF-8 and duplicate names are left to the decoder, which reports them with a path.
func scanText(data []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true))
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			// io.EOF or a syntax problem: the decoder proper reports the latter precisely.
			return nil
		}
		if tok.Kind() != '"' {
			continue
		}
		if strings.IndexByte(tok.String(), 0) >= 0 {
			ptr := dec.StackPointer()
			if kind, n := dec.StackIndex(dec.StackDepth()); kind == '{' && n%2 == 1 {
				// A member name: name the object it is in, not the unprintable name.
				return invalid(pointerField(ptr.Parent()), "member names must not contain NUL characters")
			}
			return invalid(pointerField(ptr), "must not contain NUL characters")
		}
	}
}

// translate turns a decoder error into an *Error naming the field.
func translate(err error) *Error {
	var sem *jsonv2.SemanticError
	var syn *jsontext.SyntacticError
	switch {
	case errors.As(err, &syn):
		field := pointerField(syn.JSONPointer)
		switch {
		case errors.Is(syn.Err, jsontext.ErrDuplicateName):
			return invalid(field, "appears more than once")
		case isUTF8Error(syn.Err):
			return invalid(field, "must be valid UTF-8 text")
		case syn.Err != nil && strings.Contains(syn.Err.Error(), "after top-level value"):
			return &Error{Code: CodeInvalidJSON, Message: "request body has data after the JSON object"}
		}
		return &Error{Code: CodeInvalidJSON, Message: fmt.Sprintf("malformed JSON at byte %d: %s", syn.ByteOffset, describeSyntax(syn.Err))}
	case errors.As(err, &sem):
		field := pointerField(sem.JSONPointer)
		if errors.Is(sem.Err, jsonv2.ErrUnknownName) {
			return &Error{Code: CodeUnknownField, Field: field, Message: field + ": unknown field"}
		}
		if sem.Err != nil && !isGenericSyntax(sem.Err) && implementsUnmarshaler(sem.GoType) {
			// A type with its own decoder (a duration, an enum) says best what it expects.
			return invalid(field, "%s", sem.Err.Error())
		}
		return invalid(field, "must be %s", kindOf(sem.GoType))
	}
	return &Error{Code: CodeInvalidJSON, Message: "malformed JSON"}
}

func invalid(field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if field == "" {
		return &Error{Code: CodeInvalidField, Message: "request body " + msg}
	}
	return &Error{Code: CodeInvalidField, Field: field, Message: field + ": " + msg}
}

func isUTF8Error(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "invalid UTF-8") || strings.Contains(s, "surrogate")
}

// isGenericSyntax reports the decoder's own "invalid syntax" wrapper of a number or literal that
// does not fit the Go type (1.5 into an int): the kind-based message describes that better.
func isGenericSyntax(err error) bool {
	var ne *strconv.NumError
	return errors.As(err, &ne) || err.Error() == "invalid syntax" || strings.HasPrefix(err.Error(), "cannot ")
}

// describeSyntax keeps the decoder's message but not the echo of the input that follows it.
func describeSyntax(err error) string {
	if err == nil {
		return "syntax error"
	}
	msg := err.Error()
	if i := strings.Index(msg, " within "); i > 0 {
		msg = msg[:i]
	}
	return msg
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
var textUnmarshalerType = reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()

func implementsUnmarshaler(t reflect.Type) bool {
	if t == nil {
		return false
	}
	p := reflect.PointerTo(t)
	return p.Implements(unmarshalerType) || p.Implements(textUnmarshalerType)
}

// kindOf names the JSON kind a Go type accepts.
func kindOf(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "of another type"
}

// pointerField renders a JSON Pointer ("/config/sync_cadence", "/framework_refs/2") the way the
// API names fields ("config.sync_cadence", "framework_refs[2]"). A token of digits only is taken
// as an array index.
func pointerField(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if isIndex(tok) {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

func isIndex(tok string) bool {
	if tok == "" {
		return false
	}
	for _, r := range tok {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// checkStrings enforces the text rules on every string reachable from v: member names of maps and
// string values alike. path is the field name so far; multiline is the rule of the enclosing field.
func checkStrings(v reflect.Value, path string, multiline bool) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return checkStrings(v.Elem(), path, multiline)
	case reflect.String:
		return checkText(path, v.String(), multiline)
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !(f.Anonymous && f.Type.Kind() == reflect.Struct) {
				continue
			}
			name, ok := jsonName(f)
			if !ok {
				continue
			}
			fieldPath := path
			if !f.Anonymous || f.Tag.Get("json") != "" {
				fieldPath = join(path, name)
			}
			if err := checkStrings(v.Field(i), fieldPath, f.Tag.Get("text") == "multiline"); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return nil // raw bytes (json.RawMessage): already scanned for NUL, decoded strictly later
		}
		for i := range v.Len() {
			if err := checkStrings(v.Index(i), path+"["+strconv.Itoa(i)+"]", multiline); err != nil {
				return err
			}
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			key := iter.Key()
			name := fmt.Sprint(key)
			if key.Kind() == reflect.String {
				if err := checkText(path, key.String(), false); err != nil {
					var se *Error
					if errors.As(err, &se) {
						se.Message = strings.Replace(se.Message, ": ", ": member names ", 1)
					}
					return err
				}
			}
			if err := checkStrings(iter.Value(), join(path, name), multiline); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// jsonName is the member name of a struct field, and whether it takes part in JSON at all.
func jsonName(f reflect.StructField) (string, bool) {
	tag := f.Tag.Get("json")
	if tag == "-" {
		return "", false
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	return name, true
}

// checkText rejects text no field of ours can mean: invalid UTF-8 (a value set by a custom
// decoder), NUL, and control characters (C0, DEL, C1), of which multi-line fields admit only tab,
// line feed and carriage return.
func checkText(field, s string, multiline bool) error {
	if !utf8.ValidString(s) {
		return invalid(field, "must be valid UTF-8 text")
	}
	for _, r := range s {
		if !isControl(r) {
			continue
		}
		if r == 0 {
			return invalid(field, "must not contain NUL characters")
		}
		if multiline && (r == '\t' || r == '\n' || r == '\r') {
			continue
		}
		if multiline {
			return invalid(field, "must not contain control characters other than tab and line breaks (found U+%04X)", r)
		}
		return invalid(field, "must be a single line without control characters (found U+%04X)", r)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) }
