// Package jql builds JQL queries from values that are always quoted and escaped, so that a
// project key, label or status name taken from configuration or from a webhook can never change
// the structure of a query. There is deliberately no way to splice a raw string into a query:
// field names are checked against a conservative pattern and everything else is a quoted literal,
// a number, or a relative date built from an integer.
//
// Builders never panic; an invalid field name or value is carried along and reported by
// Query.String's companion Build.
package jql

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Quote returns s as a double-quoted JQL string literal. Backslash and double quote are
// backslash-escaped; newline, carriage return and tab use \n \r \t; other control characters and
// invalid UTF-8 bytes are written as \uXXXX (invalid bytes as U+FFFD). The result contains no raw
// control character, so the literal always ends at its final quote.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
				fmt.Fprintf(&b, `\u%04x`, r)
				continue
			}
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Unquote parses a double-quoted JQL string literal produced by Quote (or typed by a person using
// the same escapes) and returns its value. It fails unless the whole input is exactly one literal.
func Unquote(lit string) (string, error) {
	if len(lit) < 2 || lit[0] != '"' {
		return "", errors.New("jql: literal must start with a double quote")
	}
	var b strings.Builder
	for i := 1; i < len(lit); {
		c := lit[i]
		switch {
		case c == '"':
			if i != len(lit)-1 {
				return "", fmt.Errorf("jql: literal ends at byte %d, before the end of input", i)
			}
			return b.String(), nil
		case c == '\\':
			if i+1 >= len(lit) {
				return "", errors.New("jql: dangling backslash")
			}
			e := lit[i+1]
			switch e {
			case '"', '\'', '\\', ' ':
				b.WriteByte(e)
				i += 2
			case 'n':
				b.WriteByte('\n')
				i += 2
			case 'r':
				b.WriteByte('\r')
				i += 2
			case 't':
				b.WriteByte('\t')
				i += 2
			case 'u':
				if i+6 > len(lit) {
					return "", errors.New("jql: short \\u escape")
				}
				n, err := strconv.ParseUint(lit[i+2:i+6], 16, 32)
				if err != nil {
					return "", fmt.Errorf("jql: bad \\u escape: %w", err)
				}
				b.WriteRune(rune(n))
				i += 6
			default:
				return "", fmt.Errorf("jql: unknown escape \\%c", e)
			}
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("jql: raw control character at byte %d", i)
		default:
			r, size := utf8.DecodeRuneInString(lit[i:])
			if r == utf8.RuneError && size == 1 {
				return "", fmt.Errorf("jql: invalid UTF-8 at byte %d", i)
			}
			b.WriteRune(r)
			i += size
		}
	}
	return "", errors.New("jql: unterminated literal")
}

// reserved are JQL keywords and reserved words that cannot be used as bare field names.
func reserved(name string) bool {
	switch strings.ToLower(name) {
	case "and", "or", "not", "empty", "null", "order", "by", "asc", "desc", "in", "is", "was",
		"changed", "from", "to", "on", "before", "after", "during", "true", "false":
		return true
	}
	return false
}

// ValidField reports whether name is a field reference this package will emit unquoted: a
// system field or alias (letters, digits, underscore, dot; starting with a letter), a custom field
// id (customfield_10010) or a cf[10010] reference, and not a JQL keyword.
func ValidField(name string) bool {
	if strings.HasPrefix(name, "cf[") && strings.HasSuffix(name, "]") {
		digits := name[3 : len(name)-1]
		_, err := strconv.ParseUint(digits, 10, 64)
		return digits != "" && err == nil && len(digits) <= 18
	}
	if name == "" || len(name) > 64 || reserved(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter {
			return false
		}
		if !letter && !(c >= '0' && c <= '9') && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// Clause is a piece of a JQL WHERE expression. The zero Clause is invalid.
type Clause struct {
	s   string
	err error
}

// String returns the clause text (or an error marker; use Query.Build to get the error).
func (c Clause) String() string {
	if c.err != nil {
		return "<invalid: " + c.err.Error() + ">"
	}
	return c.s
}

// Err returns the first error encountered while building the clause.
func (c Clause) Err() error {
	if c.err == nil && c.s == "" {
		return errors.New("jql: empty clause")
	}
	return c.err
}

func fieldErr(field string) Clause {
	return Clause{err: fmt.Errorf("jql: invalid field name %q", field)}
}

func compare(field, op, rhs string) Clause {
	if !ValidField(field) {
		return fieldErr(field)
	}
	return Clause{s: field + " " + op + " " + rhs}
}

// Eq is field = "value".
func Eq(field, value string) Clause { return compare(field, "=", Quote(value)) }

// NotEq is field != "value".
func NotEq(field, value string) Clause { return compare(field, "!=", Quote(value)) }

// In is field in ("a", "b"). At least one value is required.
func In(field string, values ...string) Clause { return list(field, "in", values) }

// NotIn is field not in ("a", "b"). At least one value is required.
func NotIn(field string, values ...string) Clause { return list(field, "not in", values) }

func list(field, op string, values []string) Clause {
	if len(values) == 0 {
		return Clause{err: fmt.Errorf("jql: %s %s needs at least one value", field, op)}
	}
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = Quote(v)
	}
	return compare(field, op, "("+strings.Join(q, ", ")+")")
}

// IsEmpty is field is EMPTY.
func IsEmpty(field string) Clause { return compare(field, "is", "EMPTY") }

// IsNotEmpty is field is not EMPTY.
func IsNotEmpty(field string) Clause { return compare(field, "is not", "EMPTY") }

// IDEquals is id = N, for numeric issue ids.
func IDEquals(id int64) Clause { return compare("id", "=", strconv.FormatInt(id, 10)) }

// Value is a right-hand side for date comparisons.
type Value struct {
	s   string
	err error
}

// DaysAgo is a relative date n days in the past (n ≥ 0): -30d.
func DaysAgo(n int) Value {
	if n < 0 {
		return Value{err: errors.New("jql: DaysAgo needs n >= 0")}
	}
	return Value{s: "-" + strconv.Itoa(n) + "d"}
}

// Relative is a relative date offset like -2w or 4h: n units from now, where unit is one of
// m (minutes), h, d, w.
func Relative(n int, unit byte) Value {
	switch unit {
	case 'm', 'h', 'd', 'w':
	default:
		return Value{err: fmt.Errorf("jql: unknown relative date unit %q", unit)}
	}
	return Value{s: strconv.Itoa(n) + string(unit)}
}

// Date is an absolute date, written as a quoted "yyyy/MM/dd HH:mm" in t's location.
func Date(t time.Time) Value { return Value{s: Quote(t.Format("2006/01/02 15:04"))} }

// Number is an integer value.
func Number(n int64) Value { return Value{s: strconv.FormatInt(n, 10)} }

// String is a quoted string value.
func String(s string) Value { return Value{s: Quote(s)} }

func cmpValue(field, op string, v Value) Clause {
	if v.err != nil {
		return Clause{err: v.err}
	}
	if v.s == "" {
		return Clause{err: errors.New("jql: empty value")}
	}
	return compare(field, op, v.s)
}

// GreaterEq is field >= v.
func GreaterEq(field string, v Value) Clause { return cmpValue(field, ">=", v) }

// Greater is field > v.
func Greater(field string, v Value) Clause { return cmpValue(field, ">", v) }

// LessEq is field <= v.
func LessEq(field string, v Value) Clause { return cmpValue(field, "<=", v) }

// Less is field < v.
func Less(field string, v Value) Clause { return cmpValue(field, "<", v) }

// And joins clauses with AND, each parenthesized.
func And(cs ...Clause) Clause { return join("AND", cs) }

// Or joins clauses with OR, each parenthesized.
func Or(cs ...Clause) Clause { return join("OR", cs) }

// Not negates a clause.
func Not(c Clause) Clause {
	if err := c.Err(); err != nil {
		return Clause{err: err}
	}
	return Clause{s: "NOT (" + c.s + ")"}
}

func join(op string, cs []Clause) Clause {
	if len(cs) == 0 {
		return Clause{err: fmt.Errorf("jql: %s of nothing", op)}
	}
	if len(cs) == 1 {
		return cs[0]
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		if err := c.Err(); err != nil {
			return Clause{err: err}
		}
		parts[i] = "(" + c.s + ")"
	}
	return Clause{s: strings.Join(parts, " "+op+" ")}
}

// Order is one ORDER BY term.
type Order struct {
	Field string
	Desc  bool
}

// Asc orders by field ascending.
func Asc(field string) Order { return Order{Field: field} }

// Desc orders by field descending.
func Desc(field string) Order { return Order{Field: field, Desc: true} }

// Query is a WHERE clause plus ORDER BY. Jira Cloud's search requires a restriction, so a Query
// without Where does not build.
type Query struct {
	Where   Clause
	OrderBy []Order
}

// maxOrderBy is Jira Cloud's limit on ORDER BY fields.
const maxOrderBy = 7

// Build returns the JQL text or the first error.
func (q Query) Build() (string, error) {
	if err := q.Where.Err(); err != nil {
		return "", err
	}
	if len(q.OrderBy) > maxOrderBy {
		return "", fmt.Errorf("jql: at most %d ORDER BY fields", maxOrderBy)
	}
	s := q.Where.s
	for i, o := range q.OrderBy {
		if !ValidField(o.Field) {
			return "", fmt.Errorf("jql: invalid ORDER BY field %q", o.Field)
		}
		if i == 0 {
			s += " ORDER BY "
		} else {
			s += ", "
		}
		s += o.Field
		if o.Desc {
			s += " DESC"
		} else {
			s += " ASC"
		}
	}
	return s, nil
}

// String returns the JQL text, or an invalid marker.
func (q Query) String() string {
	s, err := q.Build()
	if err != nil {
		return "<invalid: " + err.Error() + ">"
	}
	return s
}
