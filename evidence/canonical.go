package evidence

import (
	"fmt"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Canonical JSON.
//
// Fingerprints are computed over a canonical JSON encoding rather than over Go structs with a fixed
// field order. Two reasons decide it:
//
//   - Payloads are stored in a Postgres jsonb column, which discards key order and whitespace. With
//     a canonical encoder an auditor (or a migration) can recompute a fingerprint from the stored row
//     alone; with "stable struct field order" the fingerprint would depend on Go source order, which
//     a harmless refactor could change without anyone noticing.
//   - The encoding is a published one (RFC 8785, the JSON Canonicalization Scheme), so it can be
//     reproduced outside Go.
//
// The value space is deliberately narrower than RFC 8785: numbers must be integers within the
// I-JSON safe range (|n| <= 2^53-1), written without fraction or exponent. Payloads only carry
// counts, so floats would add the hardest part of RFC 8785 (shortest round-trip number formatting)
// and a source of ambiguity for no benefit. Within that value space the output is byte-identical to
// RFC 8785: object members sorted by their UTF-16 code units, no insignificant whitespace, and
// strings escaped minimally (only '"', '\\' and U+0000..U+001F; \b \t \n \f \r use their short
// forms, the rest \u00xx in lower-case hex; everything else, including '<', '>', '&', U+2028 and
// U+2029, is written as UTF-8).
//
// Input that a permissive parser would silently "fix" is rejected instead, because each such fix
// is a way for two different documents to share a fingerprint or for one document to be read two
// ways: duplicate object keys, invalid UTF-8, lone surrogate escapes, raw control characters,
// trailing data, and nesting deeper than maxCanonicalDepth.

// maxSafeInteger is 2^53-1, the largest integer every JSON implementation (including JavaScript
// and Postgres' jsonb numeric round trip) represents exactly (RFC 7493 section 2.2).
const maxSafeInteger = 1<<53 - 1

// maxCanonicalDepth bounds nesting so hostile input cannot exhaust the stack. Evidence payloads
// are at most two levels deep; the fingerprint envelope adds one.
const maxCanonicalDepth = 64

// CanonicalError reports why a document cannot be canonicalised and where.
type CanonicalError struct {
	Offset  int    // byte offset in the input where the problem was detected
	Problem string // what is wrong, in plain words
}

func (e *CanonicalError) Error() string {
	return fmt.Sprintf("canonical json: offset %d: %s", e.Offset, e.Problem)
}

// Canonicalize returns the canonical encoding of the JSON document in data, or a *CanonicalError
// if the document is not valid JSON or falls outside the allowed value space (see above).
// Canonicalize is idempotent: Canonicalize(Canonicalize(x)) == Canonicalize(x).
func Canonicalize(data []byte) ([]byte, error) {
	p := canonParser{data: data}
	p.skipSpace()
	out, err := p.value(nil, 0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, p.fail("unexpected data after the top-level value")
	}
	return out, nil
}

// canonParser is a strict recursive-descent JSON parser that writes canonical output as it goes.
// Objects are the only construct that needs buffering: each member's value is canonicalised into
// its own slice, then members are sorted and concatenated.
type canonParser struct {
	data []byte
	pos  int
}

func (p *canonParser) fail(format string, args ...any) error {
	return &CanonicalError{Offset: p.pos, Problem: fmt.Sprintf(format, args...)}
}

func (p *canonParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *canonParser) value(dst []byte, depth int) ([]byte, error) {
	if p.pos >= len(p.data) {
		return nil, p.fail("unexpected end of input, expected a value")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(dst, depth+1)
	case c == '[':
		return p.array(dst, depth+1)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return appendCanonicalString(dst, s), nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number(dst)
	case c == 't':
		return p.literal(dst, "true")
	case c == 'f':
		return p.literal(dst, "false")
	case c == 'n':
		return p.literal(dst, "null")
	default:
		return nil, p.fail("unexpected character %q, expected a value", c)
	}
}

func (p *canonParser) literal(dst []byte, lit string) ([]byte, error) {
	if len(p.data)-p.pos < len(lit) || string(p.data[p.pos:p.pos+len(lit)]) != lit {
		return nil, p.fail("invalid literal, expected %s", lit)
	}
	p.pos += len(lit)
	return append(dst, lit...), nil
}

type canonMember struct {
	key   string
	units []uint16 // key as UTF-16 code units: RFC 8785 sorts on these, not on bytes or runes
	value []byte
}

func (p *canonParser) object(dst []byte, depth int) ([]byte, error) {
	if depth > maxCanonicalDepth {
		return nil, p.fail("nesting deeper than %d levels", maxCanonicalDepth)
	}
	p.pos++ // '{'
	p.skipSpace()
	var members []canonMember
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return append(dst, '{', '}'), nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.fail("expected a string object key")
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.fail("expected ':' after object key")
		}
		p.pos++
		p.skipSpace()
		val, err := p.value(nil, depth)
		if err != nil {
			return nil, err
		}
		members = append(members, canonMember{key: key, units: utf16.Encode([]rune(key)), value: val})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.fail("unexpected end of input in object")
		}
		if c := p.data[p.pos]; c == ',' {
			p.pos++
			continue
		} else if c == '}' {
			p.pos++
			break
		}
		return nil, p.fail("expected ',' or '}' in object")
	}
	slices.SortFunc(members, func(a, b canonMember) int { return slices.Compare(a.units, b.units) })
	dst = append(dst, '{')
	for i, m := range members {
		if i > 0 {
			if m.key == members[i-1].key {
				return nil, &CanonicalError{Offset: p.pos, Problem: fmt.Sprintf("duplicate object key %q", m.key)}
			}
			dst = append(dst, ',')
		}
		dst = appendCanonicalString(dst, m.key)
		dst = append(dst, ':')
		dst = append(dst, m.value...)
	}
	return append(dst, '}'), nil
}

func (p *canonParser) array(dst []byte, depth int) ([]byte, error) {
	if depth > maxCanonicalDepth {
		return nil, p.fail("nesting deeper than %d levels", maxCanonicalDepth)
	}
	p.pos++ // '['
	p.skipSpace()
	dst = append(dst, '[')
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return append(dst, ']'), nil
	}
	for first := true; ; first = false {
		if !first {
			dst = append(dst, ',')
		}
		p.skipSpace()
		var err error
		if dst, err = p.value(dst, depth); err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.fail("unexpected end of input in array")
		}
		if c := p.data[p.pos]; c == ',' {
			p.pos++
			continue
		} else if c == ']' {
			p.pos++
			return append(dst, ']'), nil
		}
		return nil, p.fail("expected ',' or ']' in array")
	}
}

// number accepts the JSON integer grammar -?(0|[1-9][0-9]*) and rejects fractions and exponents,
// so there is exactly one way to write each allowed number ("-0" is written "0", as RFC 8785 does).
func (p *canonParser) number(dst []byte) ([]byte, error) {
	start := p.pos
	neg := false
	if p.data[p.pos] == '-' {
		neg = true
		p.pos++
	}
	digitsStart := p.pos
	switch {
	case p.pos >= len(p.data):
		return nil, p.fail("invalid number: missing digits")
	case p.data[p.pos] == '0':
		p.pos++
	case p.data[p.pos] >= '1' && p.data[p.pos] <= '9':
		for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			p.pos++
		}
	default:
		return nil, p.fail("invalid number: missing digits")
	}
	if p.pos < len(p.data) {
		if c := p.data[p.pos]; c == '.' || c == 'e' || c == 'E' {
			return nil, &CanonicalError{Offset: start, Problem: "only integers are allowed (no fraction or exponent)"}
		}
	}
	digits := p.data[digitsStart:p.pos]
	n, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil || n > maxSafeInteger {
		return nil, &CanonicalError{Offset: start, Problem: "integer outside the range ±(2^53-1)"}
	}
	if n == 0 {
		return append(dst, '0'), nil
	}
	if neg {
		dst = append(dst, '-')
	}
	return append(dst, digits...), nil
}

// str parses a JSON string starting at the opening quote and returns its decoded value.
func (p *canonParser) str() (string, error) {
	p.pos++ // opening quote
	var buf []byte
	for {
		if p.pos >= len(p.data) {
			return "", p.fail("unterminated string")
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c == '\\':
			r, err := p.escape()
			if err != nil {
				return "", err
			}
			buf = utf8.AppendRune(buf, r)
		case c < 0x20:
			return "", p.fail("raw control character U+%04X in string (must be escaped)", c)
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", p.fail("invalid UTF-8 in string")
			}
			buf = append(buf, p.data[p.pos:p.pos+size]...)
			p.pos += size
		}
	}
}

// escape decodes one backslash escape (including a \uXXXX\uXXXX surrogate pair) at p.pos.
func (p *canonParser) escape() (rune, error) {
	if p.pos+1 >= len(p.data) {
		return 0, p.fail("unterminated escape")
	}
	c := p.data[p.pos+1]
	switch c {
	case '"', '\\', '/':
		p.pos += 2
		return rune(c), nil
	case 'b':
		p.pos += 2
		return '\b', nil
	case 'f':
		p.pos += 2
		return '\f', nil
	case 'n':
		p.pos += 2
		return '\n', nil
	case 'r':
		p.pos += 2
		return '\r', nil
	case 't':
		p.pos += 2
		return '\t', nil
	case 'u':
		// handled below
	default:
		return 0, p.fail("invalid escape \\%c", c)
	}
	r, ok := p.hex4(p.pos + 2)
	if !ok {
		return 0, p.fail("invalid \\u escape")
	}
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		return 0, p.fail("lone low surrogate \\u%04x", r)
	case r >= 0xD800 && r <= 0xDBFF:
		if p.pos+8 > len(p.data) || p.data[p.pos+6] != '\\' || p.data[p.pos+7] != 'u' {
			return 0, p.fail("lone high surrogate \\u%04x", r)
		}
		lo, ok := p.hex4(p.pos + 8)
		if !ok || lo < 0xDC00 || lo > 0xDFFF {
			return 0, p.fail("high surrogate \\u%04x not followed by a low surrogate", r)
		}
		p.pos += 12
		return utf16.DecodeRune(r, lo), nil
	default:
		p.pos += 6
		return r, nil
	}
}

func (p *canonParser) hex4(at int) (rune, bool) {
	if at+4 > len(p.data) {
		return 0, false
	}
	var r rune
	for _, c := range p.data[at : at+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		default:
			return 0, false
		}
	}
	return r, true
}

// appendCanonicalString writes s (which must be valid UTF-8) as an RFC 8785 string literal.
// Working byte by byte is safe because every byte of a multi-byte UTF-8 sequence is >= 0x80.
func appendCanonicalString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			if c < 0x20 {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			} else {
				dst = append(dst, c)
			}
		}
	}
	return append(dst, '"')
}
