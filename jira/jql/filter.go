package jql

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxFilterDepth bounds the parenthesis nesting of a filter, as Jira bounds its parser's.
const maxFilterDepth = 64

// Filter is a JQL WHERE expression written by a person — a connection's configured
// security-ticket JQL such as `labels = "security" AND project in (SEC, OPS)` — checked so that
// it can be combined with generated clauses (And wraps it in parentheses) without changing what
// they mean. Everything else about it (its fields, operators and values) is Jira's to judge: Jira
// answers a filter it cannot parse with a 400 that names the problem.
//
// The checks are lexical and follow Jira's JQL lexer, so that this package and Jira always agree
// on where a quoted string ends and which parentheses are structure:
//   - no control characters other than tab, and valid UTF-8;
//   - every string literal ("…" or '…') is closed, and a backslash inside one starts one of the
//     escapes Jira knows (\" \' \\ \space \t \n \r \uXXXX);
//   - no backslash outside a string literal (Jira refuses one there, and a lexer that read it
//     differently from Jira could pair parentheses differently);
//   - parentheses outside string literals balance, never closing more than was opened, nested at
//     most 64 deep;
//   - no ORDER BY: the query that uses the filter decides the order.
//
// The filter is kept as written, trimmed of surrounding white space.
func Filter(text string) Clause {
	s := strings.TrimSpace(text)
	if err := checkFilter(s); err != nil {
		return Clause{err: err}
	}
	return Clause{s: s}
}

func checkFilter(s string) error {
	if s == "" {
		return errors.New("jql: the filter is empty")
	}
	if !utf8.ValidString(s) {
		return errors.New("jql: the filter is not valid UTF-8")
	}
	depth := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case isFilterControl(c):
			return fmt.Errorf("jql: the filter contains a control character at byte %d", i)
		case c == '"' || c == '\'':
			end, err := skipFilterLiteral(s, i)
			if err != nil {
				return err
			}
			i = end
		case c == '\\':
			return fmt.Errorf("jql: the filter has a backslash outside a quoted string at byte %d", i)
		case c == '(':
			depth++
			if depth > maxFilterDepth {
				return fmt.Errorf("jql: the filter nests parentheses more than %d deep", maxFilterDepth)
			}
			i++
		case c == ')':
			if depth == 0 {
				return fmt.Errorf("jql: the filter closes a parenthesis it never opened at byte %d", i)
			}
			depth--
			i++
		case isFilterWordByte(c):
			j := i
			for j < len(s) && isFilterWordByte(s[j]) {
				j++
			}
			if strings.EqualFold(s[i:j], "order") {
				return errors.New("jql: the filter must not have an ORDER BY clause (the query that uses it sets the order)")
			}
			i = j
		default:
			i++
		}
	}
	if depth != 0 {
		return fmt.Errorf("jql: the filter leaves %d parenthesis(es) open", depth)
	}
	return nil
}

// skipFilterLiteral returns the index just past the string literal that starts at s[start] (a
// double or single quote), or an error if it never closes or holds an escape Jira does not know.
func skipFilterLiteral(s string, start int) (int, error) {
	quote := s[start]
	for i := start + 1; i < len(s); {
		c := s[i]
		switch {
		case c == quote:
			return i + 1, nil
		case isFilterControl(c):
			return 0, fmt.Errorf("jql: the filter contains a control character at byte %d", i)
		case c == '\\':
			if i+1 >= len(s) {
				return 0, fmt.Errorf("jql: the filter's string starting at byte %d ends in a backslash", start)
			}
			switch e := s[i+1]; e {
			case '"', '\'', '\\', ' ', 't', 'n', 'r':
				i += 2
			case 'u':
				if i+6 > len(s) || !isHex4(s[i+2:i+6]) {
					return 0, fmt.Errorf("jql: the filter has an invalid \\u escape at byte %d", i)
				}
				i += 6
			default:
				return 0, fmt.Errorf("jql: the filter has an invalid escape \\%c at byte %d", e, i)
			}
		default:
			i++
		}
	}
	return 0, fmt.Errorf("jql: the filter's string starting at byte %d is not closed", start)
}

func isHex4(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return len(s) == 4
}

// isFilterControl reports the control characters a filter may not contain: C0 except tab, DEL.
func isFilterControl(c byte) bool { return c < 0x20 && c != '\t' || c == 0x7f }

// isFilterWordByte reports bytes that belong to an unquoted JQL word: everything but white space,
// quotes, the backslash, control characters and the characters that are tokens of their own.
func isFilterWordByte(c byte) bool {
	switch c {
	case ' ', '\t', '"', '\'', '\\', '(', ')', ',', '=', '!', '<', '>', '~', '&', '|':
		return false
	}
	return !isFilterControl(c)
}
