package jirasim

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file is the JQL front end: a tokenizer and a recursive-descent parser for the subset of
// JQL the connector (and typical clients) send. Semantics — resolving names to ids, dates,
// functions — live in query.go. Error texts imitate Jira's ("Error in the JQL Query: ... (line
// 1, character N)") so that clients surface something recognisable.

// JQLError is a JQL syntax or validation error, rendered by REST handlers as a 400 with
// errorMessages.
type JQLError struct {
	Msg string
	// Pos is the 1-based character position, 0 when not positional.
	Pos int
}

func (e *JQLError) Error() string {
	if e.Pos > 0 {
		return fmt.Sprintf("Error in the JQL Query: %s (line 1, character %d)", e.Msg, e.Pos)
	}
	return e.Msg
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tWord
	tString
	tLParen
	tRParen
	tComma
	tOp // = != < <= > >= ~ !~
	tAnd
	tOr
	tNot
)

type token struct {
	kind tokKind
	text string // word text, unescaped string, or operator
	pos  int    // 1-based rune position
}

func (t token) show() string {
	switch t.kind {
	case tEOF:
		return "end of the query"
	case tString:
		return t.text
	}
	return t.text
}

// isSpecial reports characters that end an unquoted word.
func isSpecial(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\r', '(', ')', ',', '=', '!', '<', '>', '~', '"', '\'', '&', '|':
		return true
	}
	return false
}

func tokenize(src string) ([]token, error) {
	var out []token
	pos := 0 // rune index
	i := 0
	for i < len(src) {
		r, w := utf8.DecodeRuneInString(src[i:])
		start := pos + 1
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			i += w
			pos++
		case r == '(':
			out = append(out, token{tLParen, "(", start})
			i++
			pos++
		case r == ')':
			out = append(out, token{tRParen, ")", start})
			i++
			pos++
		case r == ',':
			out = append(out, token{tComma, ",", start})
			i++
			pos++
		case r == '=' || r == '~':
			out = append(out, token{tOp, string(r), start})
			i++
			pos++
		case r == '!' || r == '<' || r == '>':
			if i+1 < len(src) && (src[i+1] == '=' || (r == '!' && src[i+1] == '~')) {
				out = append(out, token{tOp, src[i : i+2], start})
				i += 2
				pos += 2
			} else if r == '!' {
				out = append(out, token{tNot, "!", start})
				i++
				pos++
			} else {
				out = append(out, token{tOp, string(r), start})
				i++
				pos++
			}
		case r == '&' || r == '|':
			n := 1
			if i+1 < len(src) && rune(src[i+1]) == r {
				n = 2
			}
			k := tAnd
			if r == '|' {
				k = tOr
			}
			out = append(out, token{k, src[i : i+n], start})
			i += n
			pos += n
		case r == '"' || r == '\'':
			quote := r
			var b strings.Builder
			j := i + w
			p := pos + 1
			closed := false
			for j < len(src) {
				c, cw := utf8.DecodeRuneInString(src[j:])
				if c == utf8.RuneError && cw == 1 {
					return nil, &JQLError{Msg: "The query contains invalid UTF-8.", Pos: p + 1}
				}
				if c == quote {
					closed = true
					j += cw
					p++
					break
				}
				if c == '\\' {
					if j+1 >= len(src) {
						break
					}
					e, ew := utf8.DecodeRuneInString(src[j+1:])
					switch e {
					case '"', '\'', '\\', ' ':
						b.WriteRune(e)
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					case 'u':
						if j+6 > len(src) {
							return nil, &JQLError{Msg: "Illegal Unicode escape '\\u' in a quoted string.", Pos: p + 1}
						}
						v, err := strconv.ParseUint(src[j+2:j+6], 16, 32)
						if err != nil {
							return nil, &JQLError{Msg: fmt.Sprintf("Illegal Unicode escape '\\u%s' in a quoted string.", src[j+2:j+6]), Pos: p + 1}
						}
						b.WriteRune(rune(v))
						j += 6
						p += 6
						continue
					default:
						return nil, &JQLError{Msg: fmt.Sprintf("The escape sequence '\\%c' is not valid in a quoted string.", e), Pos: p + 1}
					}
					j += 1 + ew
					p += 2
					continue
				}
				b.WriteRune(c)
				j += cw
				p++
			}
			if !closed {
				return nil, &JQLError{Msg: fmt.Sprintf("The quoted string '%s' has not been completed.", b.String()), Pos: start}
			}
			out = append(out, token{tString, b.String(), start})
			i = j
			pos = p
		default:
			if r == utf8.RuneError && w == 1 {
				return nil, &JQLError{Msg: "The query contains invalid UTF-8.", Pos: start}
			}
			j := i
			p := pos
			for j < len(src) {
				c, cw := utf8.DecodeRuneInString(src[j:])
				if isSpecial(c) || (c == utf8.RuneError && cw == 1) {
					break
				}
				j += cw
				p++
			}
			word := src[i:j]
			kind := tWord
			switch strings.ToUpper(word) {
			case "AND":
				kind = tAnd
			case "OR":
				kind = tOr
			case "NOT":
				kind = tNot
			}
			out = append(out, token{kind, word, start})
			i = j
			pos = p
		}
	}
	out = append(out, token{tEOF, "", pos + 1})
	return out, nil
}

// ---- AST ----

type jqlNode interface{ isNode() }

type andNode struct{ kids []jqlNode }
type orNode struct{ kids []jqlNode }
type notNode struct{ kid jqlNode }

// clauseNode is `field op value(s)`.
type clauseNode struct {
	field    string
	fieldPos int
	op       string // "=", "!=", "<", "<=", ">", ">=", "~", "!~", "in", "not in", "is", "is not"
	values   []operand
}

func (andNode) isNode()    {}
func (orNode) isNode()     {}
func (notNode) isNode()    {}
func (clauseNode) isNode() {}

type operandKind uint8

const (
	opndValue operandKind = iota // word or quoted string
	opndEmpty                    // EMPTY / NULL
	opndFunc                     // name(args)
)

type operand struct {
	kind   operandKind
	text   string
	quoted bool
	args   []string
	pos    int
}

type sortKey struct {
	field string
	desc  bool
}

// jqlQuery is a parsed query. where is nil for an empty query or one that is only ORDER BY —
// the "unbounded" queries Cloud's /search/jql rejects.
type jqlQuery struct {
	where   jqlNode
	orderBy []sortKey
}

const maxJQLDepth = 64

type parser struct {
	toks  []token
	i     int
	depth int
}

// parseJQL parses a JQL string.
func parseJQL(src string) (*jqlQuery, error) {
	if len(src) > 64<<10 {
		return nil, &JQLError{Msg: "The JQL query is too long."}
	}
	toks, err := tokenize(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	q := &jqlQuery{}
	if !p.atOrderBy() && p.peek().kind != tEOF {
		q.where, err = p.parseOr()
		if err != nil {
			return nil, err
		}
	}
	if p.atOrderBy() {
		q.orderBy, err = p.parseOrderBy()
		if err != nil {
			return nil, err
		}
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, &JQLError{Msg: fmt.Sprintf("Expecting either 'OR' or 'AND' but got '%s'.", t.show()), Pos: t.pos}
	}
	return q, nil
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) isKeyword(t token, kw string) bool {
	return t.kind == tWord && strings.EqualFold(t.text, kw)
}

func (p *parser) atOrderBy() bool { return p.isKeyword(p.peek(), "ORDER") }

func (p *parser) parseOr() (jqlNode, error) {
	first, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	kids := []jqlNode{first}
	for p.peek().kind == tOr {
		p.next()
		n, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return orNode{kids}, nil
}

func (p *parser) parseAnd() (jqlNode, error) {
	first, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	kids := []jqlNode{first}
	for p.peek().kind == tAnd {
		p.next()
		n, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return andNode{kids}, nil
}

func (p *parser) parseNot() (jqlNode, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxJQLDepth {
		return nil, &JQLError{Msg: "The query is nested too deeply.", Pos: p.peek().pos}
	}
	t := p.peek()
	switch t.kind {
	case tNot:
		p.next()
		kid, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return notNode{kid}, nil
	case tLParen:
		p.next()
		n, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		c := p.next()
		if c.kind != tRParen {
			if c.kind == tEOF {
				return nil, &JQLError{Msg: "Expecting ')' before the end of the query.", Pos: c.pos}
			}
			return nil, &JQLError{Msg: fmt.Sprintf("Expecting ')' but got '%s'.", c.show()), Pos: c.pos}
		}
		return n, nil
	}
	return p.parseClause()
}

func (p *parser) parseClause() (jqlNode, error) {
	f := p.next()
	switch {
	case f.kind == tEOF:
		return nil, &JQLError{Msg: "Expecting a field name at the end of the query.", Pos: f.pos}
	case f.kind == tWord && !p.isKeyword(f, "ORDER"), f.kind == tString:
	default:
		return nil, &JQLError{Msg: fmt.Sprintf("Expecting a field name but got '%s'. You must surround '%s' in quotation marks to use it as a field name.", f.show(), f.show()), Pos: f.pos}
	}
	c := clauseNode{field: f.text, fieldPos: f.pos}
	o := p.next()
	switch {
	case o.kind == tOp:
		c.op = o.text
	case p.isKeyword(o, "IN"):
		c.op = "in"
	case o.kind == tNot && p.isKeyword(p.peek(), "IN"):
		p.next()
		c.op = "not in"
	case p.isKeyword(o, "IS"):
		c.op = "is"
		if p.peek().kind == tNot {
			p.next()
			c.op = "is not"
		}
	case p.isKeyword(o, "WAS"), p.isKeyword(o, "CHANGED"):
		return nil, &JQLError{Msg: fmt.Sprintf("The operator '%s' is not supported by this simulator.", strings.ToUpper(o.text)), Pos: o.pos}
	default:
		what := o.show()
		if o.kind == tEOF {
			return nil, &JQLError{Msg: "Expecting operator before the end of the query. The valid operators are '=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', 'IS' and 'IS NOT'.", Pos: o.pos}
		}
		return nil, &JQLError{Msg: fmt.Sprintf("Expecting operator but got '%s'. The valid operators are '=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', 'IS' and 'IS NOT'.", what), Pos: o.pos}
	}
	switch c.op {
	case "is", "is not":
		v := p.next()
		if !(p.isKeyword(v, "EMPTY") || p.isKeyword(v, "NULL")) {
			return nil, &JQLError{Msg: fmt.Sprintf("Expecting 'EMPTY' but got '%s'.", v.show()), Pos: v.pos}
		}
		c.values = []operand{{kind: opndEmpty, text: v.text, pos: v.pos}}
	case "in", "not in":
		l := p.next()
		if l.kind != tLParen {
			return nil, &JQLError{Msg: fmt.Sprintf("Expecting '(' but got '%s'.", l.show()), Pos: l.pos}
		}
		for {
			v, err := p.parseOperand()
			if err != nil {
				return nil, err
			}
			c.values = append(c.values, v)
			sep := p.next()
			if sep.kind == tRParen {
				break
			}
			if sep.kind != tComma {
				if sep.kind == tEOF {
					return nil, &JQLError{Msg: "Expecting ')' before the end of the query.", Pos: sep.pos}
				}
				return nil, &JQLError{Msg: fmt.Sprintf("Expecting ',' or ')' but got '%s'.", sep.show()), Pos: sep.pos}
			}
		}
	default:
		v, err := p.parseOperand()
		if err != nil {
			return nil, err
		}
		c.values = []operand{v}
	}
	return c, nil
}

func (p *parser) parseOperand() (operand, error) {
	v := p.next()
	switch v.kind {
	case tString:
		return operand{kind: opndValue, text: v.text, quoted: true, pos: v.pos}, nil
	case tWord:
		if p.isKeyword(v, "EMPTY") || p.isKeyword(v, "NULL") {
			return operand{kind: opndEmpty, text: v.text, pos: v.pos}, nil
		}
		if p.isKeyword(v, "ORDER") || p.isKeyword(v, "IN") || p.isKeyword(v, "IS") {
			return operand{}, &JQLError{Msg: fmt.Sprintf("Expecting either a value, list or function but got '%s'. You must surround '%s' in quotation marks to use it as a value.", v.text, v.text), Pos: v.pos}
		}
		if p.peek().kind == tLParen {
			p.next()
			o := operand{kind: opndFunc, text: v.text, pos: v.pos}
			if p.peek().kind == tRParen {
				p.next()
				return o, nil
			}
			for {
				a := p.next()
				if a.kind != tWord && a.kind != tString {
					return operand{}, &JQLError{Msg: fmt.Sprintf("Expecting a function argument but got '%s'.", a.show()), Pos: a.pos}
				}
				o.args = append(o.args, a.text)
				sep := p.next()
				if sep.kind == tRParen {
					return o, nil
				}
				if sep.kind != tComma {
					return operand{}, &JQLError{Msg: fmt.Sprintf("Expecting ',' or ')' but got '%s'.", sep.show()), Pos: sep.pos}
				}
			}
		}
		return operand{kind: opndValue, text: v.text, pos: v.pos}, nil
	case tEOF:
		return operand{}, &JQLError{Msg: "Expecting either a value, list or function before the end of the query.", Pos: v.pos}
	case tAnd, tOr, tNot:
		return operand{}, &JQLError{Msg: fmt.Sprintf("Expecting either a value, list or function but got '%s'. You must surround '%s' in quotation marks to use it as a value.", v.text, v.text), Pos: v.pos}
	}
	return operand{}, &JQLError{Msg: fmt.Sprintf("Expecting either a value, list or function but got '%s'.", v.show()), Pos: v.pos}
}

// maxOrderBy is Jira's limit on ORDER BY fields (JIRA-NOTES.md §3.2).
const maxOrderBy = 7

func (p *parser) parseOrderBy() ([]sortKey, error) {
	p.next() // ORDER
	by := p.next()
	if !p.isKeyword(by, "BY") {
		return nil, &JQLError{Msg: fmt.Sprintf("Expecting 'BY' but got '%s'.", by.show()), Pos: by.pos}
	}
	var keys []sortKey
	for {
		f := p.next()
		if f.kind != tWord && f.kind != tString {
			return nil, &JQLError{Msg: fmt.Sprintf("Expecting a field name but got '%s'.", f.show()), Pos: f.pos}
		}
		k := sortKey{field: f.text}
		if d := p.peek(); p.isKeyword(d, "ASC") || p.isKeyword(d, "DESC") {
			p.next()
			k.desc = strings.EqualFold(d.text, "DESC")
		}
		keys = append(keys, k)
		if len(keys) > maxOrderBy {
			return nil, &JQLError{Msg: fmt.Sprintf("The ORDER BY clause can contain at most %d fields.", maxOrderBy), Pos: f.pos}
		}
		if p.peek().kind != tComma {
			return keys, nil
		}
		p.next()
	}
}
