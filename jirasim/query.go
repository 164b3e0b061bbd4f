package jirasim

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// This file gives parsed JQL its meaning: names resolve to ids at compile time, the result is a
// tree of predicates over the compact issue struct, and a small planner answers counts from the
// maintained aggregates (per-project cubes) or narrows evaluation to an index range (project
// lists, label lists, resolved-date indexes, creation order) before falling back to a scan.

// cnode is a compiled predicate.
type cnode interface {
	eval(st *store, is *issue, idx uint32) bool
	// cubeable reports whether the predicate only reads project, issue type, status and
	// resolution, the dimensions of the count cubes.
	cubeable() bool
	refsProject() bool
}

type andC struct{ kids []cnode }
type orC struct{ kids []cnode }
type notC struct{ kid cnode }
type constC struct{ v bool }

func (n andC) eval(st *store, is *issue, idx uint32) bool {
	for _, k := range n.kids {
		if !k.eval(st, is, idx) {
			return false
		}
	}
	return true
}
func (n orC) eval(st *store, is *issue, idx uint32) bool {
	for _, k := range n.kids {
		if k.eval(st, is, idx) {
			return true
		}
	}
	return false
}
func (n notC) eval(st *store, is *issue, idx uint32) bool { return !n.kid.eval(st, is, idx) }
func (n constC) eval(*store, *issue, uint32) bool         { return n.v }
func (n andC) cubeable() bool                             { return allKids(n.kids, cnode.cubeable) }
func (n orC) cubeable() bool                              { return allKids(n.kids, cnode.cubeable) }
func (n notC) cubeable() bool                             { return n.kid.cubeable() }
func (constC) cubeable() bool                             { return true }
func (n andC) refsProject() bool                          { return anyKid(n.kids, cnode.refsProject) }
func (n orC) refsProject() bool                           { return anyKid(n.kids, cnode.refsProject) }
func (n notC) refsProject() bool                          { return n.kid.refsProject() }
func (constC) refsProject() bool                          { return false }
func allKids(ks []cnode, f func(cnode) bool) bool {
	return !slices.ContainsFunc(ks, func(k cnode) bool { return !f(k) })
}
func anyKid(ks []cnode, f func(cnode) bool) bool { return slices.ContainsFunc(ks, f) }
func (l projLeaf) eval(_ *store, is *issue, _ uint32) bool {
	_, in := l.set[is.project]
	return in != l.neg
}
func (projLeaf) cubeable() bool                              { return true }
func (projLeaf) refsProject() bool                           { return true }
func (l issueLeaf) eval(_ *store, _ *issue, idx uint32) bool { _, in := l.set[idx]; return in != l.neg }
func (issueLeaf) cubeable() bool                             { return false }
func (issueLeaf) refsProject() bool                          { return false }

// projLeaf matches a set of projects (neg: not in the set).
type projLeaf struct {
	set map[uint32]struct{}
	neg bool
}

// issueLeaf matches a set of issues by index.
type issueLeaf struct {
	set map[uint32]struct{}
	neg bool
}

// maskField names the small enumerated fields matched by bit masks.
type maskField uint8

const (
	mfType maskField = iota
	mfStatus
	mfRes
	mfPriority
)

// maskLeaf matches when the issue's value has its bit set in mask.
type maskLeaf struct {
	field maskField
	mask  uint64
}

func (l maskLeaf) eval(_ *store, is *issue, _ uint32) bool {
	var v uint8
	switch l.field {
	case mfType:
		v = is.itype
	case mfStatus:
		v = is.status
	case mfRes:
		v = is.res
	case mfPriority:
		v = is.priority
	}
	return l.mask>>v&1 != 0
}
func (l maskLeaf) cubeable() bool  { return l.field != mfPriority }
func (maskLeaf) refsProject() bool { return false }

type labelMode uint8

const (
	lmAny      labelMode = iota // = / IN: carries one of ids
	lmNone                      // != / NOT IN: has labels, none of ids (Jira's != skips empty fields)
	lmEmpty                     // IS EMPTY
	lmNotEmpty                  // IS NOT EMPTY
)

type labelLeaf struct {
	ids   []uint32 // label ids known at compile time
	names []string // every label named; long-lived filters (webhooks) resolve late-created labels
	mode  labelMode
}

func (l labelLeaf) eval(st *store, is *issue, _ uint32) bool {
	switch l.mode {
	case lmEmpty:
		return is.labels == 0
	case lmNotEmpty:
		return is.labels != 0
	}
	ids := l.ids
	if len(ids) < len(l.names) {
		ids = ids[:0:0]
		for _, n := range l.names {
			if id, ok := st.labelIDs[n]; ok {
				ids = append(ids, id)
			}
		}
	}
	any := false
	for _, id := range ids {
		if st.hasLabel(is.labels, id) {
			any = true
			break
		}
	}
	if l.mode == lmAny {
		return any
	}
	return is.labels != 0 && !any
}
func (labelLeaf) cubeable() bool    { return false }
func (labelLeaf) refsProject() bool { return false }

type dateField uint8

const (
	dfCreated dateField = iota
	dfUpdated
	dfResolved
)

// dateLeaf compares a timestamp with [lo, hi] (inclusive, ms). Empty values never match a
// comparison; empty/notEmpty handle IS [NOT] EMPTY.
type dateLeaf struct {
	field    dateField
	lo, hi   int64
	neg      bool // != : outside [lo,hi]
	empty    bool
	notEmpty bool
}

func (l dateLeaf) value(is *issue) int64 {
	switch l.field {
	case dfCreated:
		return is.created
	case dfUpdated:
		return is.updated
	}
	return is.resolved
}

func (l dateLeaf) eval(_ *store, is *issue, _ uint32) bool {
	v := l.value(is)
	switch {
	case l.empty:
		return v == 0
	case l.notEmpty:
		return v != 0
	case v == 0:
		return false
	}
	in := v >= l.lo && v <= l.hi
	return in != l.neg
}
func (dateLeaf) cubeable() bool    { return false }
func (dateLeaf) refsProject() bool { return false }

type textWhere uint8

const (
	twSummary textWhere = iota
	twDescription
	twText // summary, description and text custom fields
	twCustom
)

// textLeaf is a case-insensitive containment match (`~`), or exact match for `=` on textfields.
type textLeaf struct {
	where  textWhere
	field  string
	needle string // lower-case
	exact  bool
	neg    bool
	empty  int8 // 1: IS EMPTY, -1: IS NOT EMPTY
}

func (l textLeaf) texts(st *store, is *issue, idx uint32) []string {
	var out []string
	if l.where == twSummary || l.where == twText {
		out = append(out, st.summary(idx))
	}
	if is.ext != nil {
		if l.where == twDescription || l.where == twText {
			if t := descriptionText(is.ext); t != "" {
				out = append(out, t)
			}
		}
		for id, v := range is.ext.custom {
			f := st.fieldByID[id]
			if f == nil || (f.Type != FieldTextField && f.Type != FieldTextArea) {
				continue
			}
			if (l.where == twCustom && id == l.field) || l.where == twText {
				if t := v.plainText(); t != "" {
					out = append(out, t)
				}
			}
		}
	}
	return out
}

func (l textLeaf) eval(st *store, is *issue, idx uint32) bool {
	ts := l.texts(st, is, idx)
	switch l.empty {
	case 1:
		return len(ts) == 0
	case -1:
		return len(ts) != 0
	}
	if len(ts) == 0 {
		return false
	}
	hit := false
	for _, t := range ts {
		lt := strings.ToLower(t)
		if (l.exact && lt == l.needle) || (!l.exact && strings.Contains(lt, l.needle)) {
			hit = true
			break
		}
	}
	return hit != l.neg
}
func (textLeaf) cubeable() bool    { return false }
func (textLeaf) refsProject() bool { return false }

// cfLeaf matches option/label custom fields.
type cfLeaf struct {
	field string
	vals  []string // option ids (select types) or label strings
	mode  labelMode
}

func (l cfLeaf) eval(_ *store, is *issue, _ uint32) bool {
	var have []string
	if is.ext != nil {
		if v, ok := is.ext.custom[l.field]; ok {
			have = v.options
			if have == nil {
				have = v.strs
			}
		}
	}
	switch l.mode {
	case lmEmpty:
		return len(have) == 0
	case lmNotEmpty:
		return len(have) != 0
	}
	any := false
	for _, h := range have {
		if slices.Contains(l.vals, h) {
			any = true
			break
		}
	}
	if l.mode == lmAny {
		return any
	}
	return len(have) != 0 && !any
}
func (cfLeaf) cubeable() bool    { return false }
func (cfLeaf) refsProject() bool { return false }

// userLeaf matches reporter/assignee (user index + 1; 0 = empty).
type userLeaf struct {
	assignee bool
	set      map[uint32]struct{}
	neg      bool
}

func (l userLeaf) eval(_ *store, is *issue, _ uint32) bool {
	v := is.reporter
	if l.assignee {
		v = is.assignee
	}
	_, in := l.set[v]
	if l.neg {
		return v != 0 && !in
	}
	return in
}
func (userLeaf) cubeable() bool    { return false }
func (userLeaf) refsProject() bool { return false }

// ---- compilation ----

// compiledQuery is a JQL query ready to run against the store.
type compiledQuery struct {
	root  cnode // nil: unbounded
	order []sortKey
	jql   string
}

type compileCtx struct {
	st      *store
	now     time.Time
	me      uint32 // current user index + 1
	webhook bool   // restrict to the dynamic-webhook jqlFilter subset
}

func jqlErr(format string, a ...any) error { return &JQLError{Msg: fmt.Sprintf(format, a...)} }

// compileJQL parses and compiles a query.
func compileJQL(src string, cx compileCtx) (*compiledQuery, error) {
	q, err := parseJQL(src)
	if err != nil {
		return nil, err
	}
	cq := &compiledQuery{jql: src}
	if q.where != nil {
		cq.root, err = cx.compile(q.where)
		if err != nil {
			return nil, err
		}
	}
	for _, k := range q.orderBy {
		f := strings.ToLower(k.field)
		switch f {
		case "created", "createddate", "updated", "updateddate", "resolved", "resolutiondate", "key", "issuekey", "id", "priority":
		default:
			if _, ok := cx.fieldKind(f); ok || cx.isCustom(k.field) {
				return nil, jqlErr("Field '%s' does not support sorting.", k.field)
			}
			return nil, jqlErr("Field '%s' does not exist or you do not have permission to view it.", k.field)
		}
		cq.order = append(cq.order, sortKey{field: f, desc: k.desc})
	}
	return cq, nil
}

func (cx compileCtx) compile(n jqlNode) (cnode, error) {
	switch n := n.(type) {
	case andNode:
		out := andC{}
		for _, k := range n.kids {
			c, err := cx.compile(k)
			if err != nil {
				return nil, err
			}
			out.kids = append(out.kids, c)
		}
		return out, nil
	case orNode:
		out := orC{}
		for _, k := range n.kids {
			c, err := cx.compile(k)
			if err != nil {
				return nil, err
			}
			out.kids = append(out.kids, c)
		}
		return out, nil
	case notNode:
		c, err := cx.compile(n.kid)
		if err != nil {
			return nil, err
		}
		return notC{c}, nil
	case clauseNode:
		return cx.clause(n)
	}
	return nil, jqlErr("unsupported query construct")
}

type fieldKind uint8

const (
	fkProject fieldKind = iota
	fkIssue
	fkType
	fkStatus
	fkCategory
	fkRes
	fkPriority
	fkLabels
	fkCreated
	fkUpdated
	fkResolved
	fkSummary
	fkDescription
	fkText
	fkAssignee
	fkReporter
)

func (cx compileCtx) fieldKind(f string) (fieldKind, bool) {
	switch strings.ToLower(f) {
	case "project":
		return fkProject, true
	case "key", "issuekey", "id", "issue":
		return fkIssue, true
	case "issuetype", "type":
		return fkType, true
	case "status":
		return fkStatus, true
	case "statuscategory", "category":
		return fkCategory, true
	case "resolution":
		return fkRes, true
	case "priority":
		return fkPriority, true
	case "labels":
		return fkLabels, true
	case "created", "createddate":
		return fkCreated, true
	case "updated", "updateddate":
		return fkUpdated, true
	case "resolved", "resolutiondate":
		return fkResolved, true
	case "summary":
		return fkSummary, true
	case "description":
		return fkDescription, true
	case "text":
		return fkText, true
	case "assignee":
		return fkAssignee, true
	case "reporter":
		return fkReporter, true
	}
	return 0, false
}

func (cx compileCtx) isCustom(f string) bool {
	_, ok := cx.st.findField(f)
	return ok
}

var opsEnum = []string{"=", "!=", "in", "not in", "is", "is not"}
var opsDate = []string{"=", "!=", "<", "<=", ">", ">=", "is", "is not"}
var opsText = []string{"~", "!~", "is", "is not"}

func checkOp(field, op string, allowed []string) error {
	if slices.Contains(allowed, op) {
		return nil
	}
	return jqlErr("The operator '%s' is not supported by the '%s' field.", strings.ToUpper(op), field)
}

func isNegOp(op string) bool { return op == "!=" || op == "not in" || op == "!~" }

// webhookFields is the jqlFilter subset dynamic webhooks accept (JIRA-NOTES.md §6.1).
var webhookFields = map[fieldKind]bool{fkIssue: true, fkProject: true, fkType: true, fkStatus: true, fkAssignee: true, fkReporter: true}

func (cx compileCtx) clause(c clauseNode) (cnode, error) {
	kind, known := cx.fieldKind(c.field)
	if !known {
		f, ok := cx.st.findField(c.field)
		if !ok {
			return nil, jqlErr("Field '%s' does not exist or you do not have permission to view it.", c.field)
		}
		if cx.webhook {
			return nil, jqlErr("The clause %s is unsupported", c.field)
		}
		return cx.customClause(c, f)
	}
	if cx.webhook {
		if !webhookFields[kind] {
			return nil, jqlErr("The clause %s is unsupported", c.field)
		}
		if !slices.Contains([]string{"=", "!=", "in", "not in"}, c.op) {
			return nil, jqlErr("The operator '%s' is unsupported", strings.ToUpper(c.op))
		}
	}
	emptyOp := c.op == "is" || c.op == "is not" || c.values[0].kind == opndEmpty
	switch kind {
	case fkProject:
		if err := checkOp(c.field, c.op, opsEnum); err != nil {
			return nil, err
		}
		if emptyOp {
			return constC{v: c.op == "is not" || c.op == "!="}, nil
		}
		set := map[uint32]struct{}{}
		for _, v := range c.values {
			if v.kind != opndValue {
				return nil, jqlErr("Function '%s' is not supported for the field 'project'.", v.text)
			}
			p, ok := cx.st.findProject(v.text)
			if !ok {
				return nil, jqlErr("The value '%s' does not exist for the field '%s'.", v.text, c.field)
			}
			set[p] = struct{}{}
		}
		return projLeaf{set: set, neg: isNegOp(c.op)}, nil
	case fkIssue:
		if err := checkOp(c.field, c.op, []string{"=", "!=", "in", "not in"}); err != nil {
			return nil, err
		}
		set := map[uint32]struct{}{}
		for _, v := range c.values {
			if v.kind != opndValue {
				return nil, jqlErr("The value for the field '%s' must be an issue key or id.", c.field)
			}
			if _, _, ok := splitIssueKey(v.text); !ok {
				if _, err := strconv.Atoi(v.text); err != nil {
					return nil, jqlErr("The issue key '%s' for field '%s' is invalid.", v.text, c.field)
				}
			}
			idx, ok := cx.st.findIssue(v.text)
			if !ok {
				return nil, jqlErr("An issue with key '%s' does not exist for field '%s'.", v.text, c.field)
			}
			set[idx] = struct{}{}
		}
		return issueLeaf{set: set, neg: isNegOp(c.op)}, nil
	case fkType, fkStatus, fkCategory, fkRes, fkPriority:
		return cx.maskClause(c, kind)
	case fkLabels:
		if err := checkOp(c.field, c.op, opsEnum); err != nil {
			return nil, err
		}
		if emptyOp {
			if c.op == "is not" || c.op == "!=" {
				return labelLeaf{mode: lmNotEmpty}, nil
			}
			return labelLeaf{mode: lmEmpty}, nil
		}
		l := labelLeaf{mode: lmAny}
		if isNegOp(c.op) {
			l.mode = lmNone
		}
		for _, v := range c.values {
			if v.kind != opndValue {
				return nil, jqlErr("Function '%s' is not supported for the field 'labels'.", v.text)
			}
			l.names = append(l.names, v.text)
			if id, ok := cx.st.labelIDs[v.text]; ok {
				l.ids = append(l.ids, id)
			}
		}
		return l, nil
	case fkCreated, fkUpdated, fkResolved:
		if err := checkOp(c.field, c.op, opsDate); err != nil {
			return nil, err
		}
		df := map[fieldKind]dateField{fkCreated: dfCreated, fkUpdated: dfUpdated, fkResolved: dfResolved}[kind]
		if emptyOp {
			if c.op == "is not" || c.op == "!=" {
				return dateLeaf{field: df, notEmpty: true}, nil
			}
			return dateLeaf{field: df, empty: true}, nil
		}
		t, err := cx.dateValue(c.field, c.values[0])
		if err != nil {
			return nil, err
		}
		ms := t.UnixMilli()
		l := dateLeaf{field: df, lo: minMs, hi: maxMs}
		switch c.op {
		case "=", "!=":
			l.lo, l.hi, l.neg = ms, ms+59999, c.op == "!="
		case ">":
			l.lo = ms + 1
		case ">=":
			l.lo = ms
		case "<":
			l.hi = ms - 1
		case "<=":
			l.hi = ms
		}
		return l, nil
	case fkSummary, fkDescription, fkText:
		if err := checkOp(c.field, c.op, opsText); err != nil {
			return nil, err
		}
		w := map[fieldKind]textWhere{fkSummary: twSummary, fkDescription: twDescription, fkText: twText}[kind]
		return textClause(c, textLeaf{where: w})
	case fkAssignee, fkReporter:
		if err := checkOp(c.field, c.op, opsEnum); err != nil {
			return nil, err
		}
		l := userLeaf{assignee: kind == fkAssignee, set: map[uint32]struct{}{}, neg: isNegOp(c.op) || c.op == "is not"}
		for _, v := range c.values {
			switch {
			case v.kind == opndEmpty:
				l.set[0] = struct{}{}
			case v.kind == opndFunc && strings.EqualFold(v.text, "currentUser"):
				l.set[cx.me] = struct{}{}
			case v.kind == opndFunc:
				return nil, jqlErr("Function '%s' is not supported for the field '%s'.", v.text, c.field)
			default:
				u, ok := cx.st.findUser(v.text)
				if !ok {
					return nil, jqlErr("The value '%s' does not exist for the field '%s'.", v.text, c.field)
				}
				l.set[u+1] = struct{}{}
			}
		}
		if _, hasEmpty := l.set[0]; hasEmpty && l.neg {
			// "assignee is not EMPTY": anything but empty.
			delete(l.set, 0)
			return notC{userLeaf{assignee: l.assignee, set: map[uint32]struct{}{0: {}}}}, nil
		}
		return l, nil
	}
	return nil, jqlErr("Field '%s' is not supported.", c.field)
}

const (
	minMs = -1 << 62
	maxMs = 1 << 62
)

func textClause(c clauseNode, l textLeaf) (cnode, error) {
	switch c.op {
	case "is":
		l.empty = 1
		return l, nil
	case "is not":
		l.empty = -1
		return l, nil
	}
	v := c.values[0]
	if v.kind != opndValue {
		return nil, jqlErr("The field '%s' only supports text values.", c.field)
	}
	needle := strings.ToLower(strings.Trim(strings.TrimSpace(v.text), "*"))
	if needle == "" {
		return nil, jqlErr("The field '%s' does not support searching for an empty string.", c.field)
	}
	l.needle = needle
	l.exact = c.op == "="
	l.neg = c.op == "!~" || c.op == "!="
	return l, nil
}

func (cx compileCtx) maskClause(c clauseNode, kind fieldKind) (cnode, error) {
	if err := checkOp(c.field, c.op, opsEnum); err != nil {
		return nil, err
	}
	var field maskField
	var n int
	switch kind {
	case fkType:
		field, n = mfType, int(numIssueTypes)
	case fkStatus, fkCategory:
		field, n = mfStatus, int(numStatuses)
	case fkRes:
		field, n = mfRes, int(numResolutionSlots)
	case fkPriority:
		field, n = mfPriority, int(numPriorities)
	}
	all := uint64(1)<<n - 1
	hasEmpty := kind == fkRes // only resolution can be empty among these
	var m uint64
	sawEmpty := false
	for _, v := range c.values {
		if v.kind == opndEmpty {
			sawEmpty = true
			if hasEmpty {
				m |= 1
			}
			continue
		}
		if v.kind == opndFunc {
			return nil, jqlErr("Function '%s' is not supported for the field '%s'.", v.text, c.field)
		}
		switch kind {
		case fkType:
			t, ok := lookupIssueType(v.text)
			if !ok {
				return nil, jqlErr("The value '%s' does not exist for the field '%s'.", v.text, c.field)
			}
			m |= 1 << t
		case fkStatus:
			s, ok := lookupStatus(v.text)
			if !ok {
				return nil, jqlErr("The value '%s' does not exist for the field '%s'.", v.text, c.field)
			}
			m |= 1 << s
		case fkCategory:
			cat, ok := lookupCategory(v.text)
			if !ok {
				return nil, jqlErr("The value '%s' does not exist for the field '%s'.", v.text, c.field)
			}
			for i, s := range statuses {
				if s.cat == cat {
					m |= 1 << i
				}
			}
		case fkRes:
			if strings.EqualFold(v.text, "Unresolved") {
				m |= 1
				continue
			}
			r, ok := lookupResolution(v.text)
			if !ok {
				return nil, jqlErr("The value '%s' does not exist for the field '%s'.", v.text, c.field)
			}
			m |= 1 << r
		case fkPriority:
			p, ok := lookupPriority(v.text)
			if !ok {
				return nil, jqlErr("The value '%s' does not exist for the field '%s'.", v.text, c.field)
			}
			m |= 1 << p
		}
	}
	switch c.op {
	case "is":
		m = 0
		if hasEmpty {
			m = 1
		}
	case "is not":
		m = all
		if hasEmpty {
			m = all &^ 1
		}
	case "!=", "not in":
		m = all &^ m
		if hasEmpty && !sawEmpty {
			// Jira's != and NOT IN never match an empty field.
			m &^= 1
		}
	}
	return maskLeaf{field: field, mask: m}, nil
}

func (cx compileCtx) customClause(c clauseNode, f *customField) (cnode, error) {
	emptyOp := c.op == "is" || c.op == "is not" || c.values[0].kind == opndEmpty
	switch f.Type {
	case FieldTextField, FieldTextArea:
		allowed := opsText
		if f.Type == FieldTextField {
			allowed = append(slices.Clone(opsText), "=", "!=")
		}
		if err := checkOp(c.field, c.op, allowed); err != nil {
			return nil, err
		}
		return textClause(c, textLeaf{where: twCustom, field: f.ID})
	}
	if err := checkOp(c.field, c.op, opsEnum); err != nil {
		return nil, err
	}
	if emptyOp {
		if c.op == "is not" || c.op == "!=" {
			return cfLeaf{field: f.ID, mode: lmNotEmpty}, nil
		}
		return cfLeaf{field: f.ID, mode: lmEmpty}, nil
	}
	l := cfLeaf{field: f.ID, mode: lmAny}
	if isNegOp(c.op) {
		l.mode = lmNone
	}
	for _, v := range c.values {
		if v.kind != opndValue {
			return nil, jqlErr("Function '%s' is not supported for the field '%s'.", v.text, c.field)
		}
		if f.Type == FieldLabels {
			l.vals = append(l.vals, v.text)
			continue
		}
		id, ok := f.optByName[strings.ToLower(v.text)]
		if !ok {
			if _, isID := f.optByID[v.text]; isID {
				id, ok = v.text, true
			}
		}
		if !ok {
			return nil, jqlErr("The option '%s' for field '%s' does not exist.", v.text, c.field)
		}
		l.vals = append(l.vals, id)
	}
	return l, nil
}

// ---- dates ----

var relDateRe = regexp.MustCompile(`^\s*([-+]?\d+[wdhm]\s*)+$`)
var relPartRe = regexp.MustCompile(`([-+]?)(\d+)([wdhm])`)

const dateFormatsHelp = "Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'."

func (cx compileCtx) dateValue(field string, v operand) (time.Time, error) {
	if v.kind == opndFunc {
		return cx.dateFunc(field, v)
	}
	s := strings.TrimSpace(v.text)
	for _, layout := range []string{"2006-01-02 15:04", "2006/01/02 15:04", "2006-01-02", "2006/01/02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	if relDateRe.MatchString(s) {
		d, err := parsePeriod(s)
		if err != nil {
			return time.Time{}, jqlErr("Date value '%s' for field '%s' is invalid. %s", v.text, field, dateFormatsHelp)
		}
		return cx.now.Add(d), nil
	}
	return time.Time{}, jqlErr("Date value '%s' for field '%s' is invalid. %s", v.text, field, dateFormatsHelp)
}

// parsePeriod parses "-30d", "4w 2d", "-2h", "-15m". A leading sign applies to its own part.
func parsePeriod(s string) (time.Duration, error) {
	var total time.Duration
	for _, m := range relPartRe.FindAllStringSubmatch(s, -1) {
		n, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil || n > 100000 {
			return 0, fmt.Errorf("period %q out of range", s)
		}
		unit := map[string]time.Duration{"w": 7 * 24 * time.Hour, "d": 24 * time.Hour, "h": time.Hour, "m": time.Minute}[m[3]]
		d := time.Duration(n) * unit
		if m[1] == "-" {
			d = -d
		}
		total += d
	}
	return total, nil
}

func (cx compileCtx) dateFunc(field string, v operand) (time.Time, error) {
	now := cx.now.UTC()
	var inc time.Duration
	if len(v.args) > 1 {
		return time.Time{}, jqlErr("Function '%s' expects at most one argument.", v.text)
	}
	if len(v.args) == 1 {
		if !relDateRe.MatchString(v.args[0]) {
			return time.Time{}, jqlErr("Function '%s' got an invalid increment '%s'.", v.text, v.args[0])
		}
		d, err := parsePeriod(v.args[0])
		if err != nil {
			return time.Time{}, jqlErr("Function '%s' got an invalid increment '%s'.", v.text, v.args[0])
		}
		inc = d
	}
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	switch strings.ToLower(v.text) {
	case "now":
		if len(v.args) > 0 {
			return time.Time{}, jqlErr("Function 'now' does not take arguments.")
		}
		return now, nil
	case "startofday":
		return day.Add(inc), nil
	case "endofday":
		return day.Add(24*time.Hour - time.Millisecond).Add(inc), nil
	case "startofweek":
		return day.AddDate(0, 0, -int(day.Weekday())).Add(inc), nil
	case "startofmonth":
		return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).Add(inc), nil
	case "startofyear":
		return time.Date(now.Year(), 1, 1, 0, 0, 0, 0, time.UTC).Add(inc), nil
	}
	return time.Time{}, jqlErr("Unable to find JQL function '%s(%s)' for the field '%s'.", v.text, strings.Join(v.args, ", "), field)
}

// ---- execution ----

// visibility implements the search-lag fault: issues changed at or after cutoff are not yet
// indexed, unless the caller listed them in reconcileIssues.
type visibility struct {
	cutoff    int64
	reconcile map[uint32]bool
}

func (v *visibility) visible(is *issue, idx uint32) bool {
	if v == nil || v.cutoff == 0 {
		return true
	}
	if v.reconcile[idx] {
		return true
	}
	return is.updated < v.cutoff
}

// candidateSet is a subset of issues guaranteed to contain every match.
type candidateSet struct {
	all   bool       // every issue
	lo    int        // idx range [lo,hi) when ranged
	hi    int        //
	lists [][]uint32 // disjoint idx lists (projects) or a single merged list
	res   []resEntry // resolved-date ordered entries
	size  int
	// idxOrdered: iteration yields ascending idx (all, ranges, single list).
	idxOrdered bool
	resOrdered bool
	// implied lists the top-level conjuncts (indexes into conjuncts(root)) that every candidate
	// satisfies by construction, so a scan need not evaluate them again (see residual).
	implied []int
}

// residual is root without the conjuncts the candidates already satisfy. On a large site the
// label test of the resolved-ticket sample was most of a count's cost: every candidate comes
// from that label's list, yet each was looked up again in its label set.
func (c *candidateSet) residual(root cnode) cnode {
	if len(c.implied) == 0 {
		return root
	}
	var kids []cnode
	for i, k := range conjuncts(root) {
		if !slices.Contains(c.implied, i) {
			kids = append(kids, k)
		}
	}
	switch len(kids) {
	case 0:
		return constC{v: true}
	case 1:
		return kids[0]
	}
	return andC{kids: kids}
}

func (c *candidateSet) each(desc bool, fn func(idx uint32) bool) {
	switch {
	case c.res != nil || c.resOrdered:
		if desc {
			for i := len(c.res) - 1; i >= 0; i-- {
				if !fn(c.res[i].idx) {
					return
				}
			}
			return
		}
		for _, e := range c.res {
			if !fn(e.idx) {
				return
			}
		}
	case c.lists != nil:
		if desc && len(c.lists) == 1 {
			l := c.lists[0]
			for i := len(l) - 1; i >= 0; i-- {
				if !fn(l[i]) {
					return
				}
			}
			return
		}
		for _, l := range c.lists {
			for _, idx := range l {
				if !fn(idx) {
					return
				}
			}
		}
	default:
		if desc {
			for i := c.hi - 1; i >= c.lo; i-- {
				if !fn(uint32(i)) {
					return
				}
			}
			return
		}
		for i := c.lo; i < c.hi; i++ {
			if !fn(uint32(i)) {
				return
			}
		}
	}
}

func conjuncts(n cnode) []cnode {
	if a, ok := n.(andC); ok {
		var out []cnode
		for _, k := range a.kids {
			out = append(out, conjuncts(k)...)
		}
		return out
	}
	return []cnode{n}
}

// candidates picks the narrowest index the query's top-level conjuncts allow.
func (st *store) candidates(root cnode) candidateSet {
	best := candidateSet{all: true, lo: 0, hi: len(st.issues), size: len(st.issues), idxOrdered: true}
	consider := func(c candidateSet) {
		if c.size < best.size {
			best = c
		}
	}
	cs := conjuncts(root)
	// Resolved-date bounds across conjuncts.
	rlo, rhi := int64(minMs), int64(maxMs)
	hasR := false
	var rLeaves []int // the conjuncts the bounds came from
	clo, chi := int64(minMs), int64(maxMs)
	hasC := false
	for i, c := range cs {
		if d, ok := c.(dateLeaf); ok && !d.neg && !d.empty && !d.notEmpty {
			switch d.field {
			case dfResolved:
				rlo, rhi, hasR = max(rlo, d.lo), min(rhi, d.hi), true
				rLeaves = append(rLeaves, i)
			case dfCreated:
				clo, chi, hasC = max(clo, d.lo), min(chi, d.hi), true
			}
		}
	}
	resRange := func(s []resEntry) []resEntry {
		i := sort.Search(len(s), func(i int) bool { return s[i].at >= rlo })
		j := sort.Search(len(s), func(i int) bool { return s[i].at > rhi })
		if j < i {
			j = i
		}
		return s[i:j]
	}
	// An entry of a resolved-date index within [rlo, rhi] satisfies every resolved-date bound,
	// as dateLeaf.eval does, except a resolution time of 0, which eval treats as unresolved.
	var rImplied []int
	if hasR && rlo > 0 {
		rImplied = rLeaves
	}
	if hasR {
		r := resRange(st.resolvedIdx)
		consider(candidateSet{res: r, size: len(r), resOrdered: true, implied: rImplied})
	}
	if hasC && st.createdSorted {
		lo := sort.Search(len(st.issues), func(i int) bool { return st.issues[i].created >= clo })
		hi := sort.Search(len(st.issues), func(i int) bool { return st.issues[i].created > chi })
		if hi < lo {
			hi = lo
		}
		consider(candidateSet{lo: lo, hi: hi, size: hi - lo, idxOrdered: true})
	}
	for ci, c := range cs {
		switch l := c.(type) {
		case projLeaf:
			if l.neg {
				continue
			}
			cand := candidateSet{lists: [][]uint32{}}
			for p := range l.set {
				cand.lists = append(cand.lists, st.projects[p].issues)
				cand.size += len(st.projects[p].issues)
			}
			slices.SortFunc(cand.lists, func(a, b []uint32) int { return len(a) - len(b) })
			cand.idxOrdered = len(cand.lists) == 1
			consider(cand)
		case issueLeaf:
			if l.neg {
				continue
			}
			list := make([]uint32, 0, len(l.set))
			for idx := range l.set {
				list = append(list, idx)
			}
			slices.Sort(list)
			consider(candidateSet{lists: [][]uint32{list}, size: len(list), idxOrdered: true})
		case labelLeaf:
			if l.mode != lmAny {
				continue
			}
			// The union of the named labels' lists satisfies the clause, unless a name had no
			// id when the query was compiled (eval resolves those late).
			var implied []int
			if len(l.ids) == len(l.names) {
				implied = []int{ci}
			}
			if hasR {
				var merged []resEntry
				for _, id := range l.ids {
					merged = mergeSorted(merged, resRange(st.labelResolved[id]), resCmp)
				}
				consider(candidateSet{res: merged, size: len(merged), resOrdered: true, implied: append(implied, rImplied...)})
				continue
			}
			var merged []uint32
			for _, id := range l.ids {
				merged = mergeSorted(merged, st.labelIssues[id], cmp.Compare[uint32])
			}
			consider(candidateSet{lists: [][]uint32{merged}, size: len(merged), idxOrdered: true, implied: implied})
		}
	}
	return best
}

// mergeSorted returns the union of a and b, both sorted by cmp and free of duplicates, in one
// linear pass: an issue with several of a clause's labels is in several label lists, and sorting
// the concatenation cost more than the count it fed (O(n log n) per search on a large site, where
// Jira answers from its index). With a empty it returns b itself, so callers must not modify the
// result.
func mergeSorted[T any](a, b []T, cmp func(T, T) int) []T {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	out := make([]T, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := cmp(a[i], b[j]); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// count answers a count query, from the cubes when the predicate allows it.
func (s *Sim) countLocked(cq *compiledQuery, vis *visibility) int {
	st := s.st
	if cq.root == nil {
		n := len(st.issues)
		if vis != nil && vis.cutoff != 0 {
			n -= s.invisibleMatches(nil, vis)
		}
		return n
	}
	if root := st.dropTrivialDates(cq.root); root.cubeable() {
		s.aggAnswers.Add(1)
		n := int(s.cubeCount(root))
		if vis != nil && vis.cutoff != 0 {
			n -= s.invisibleMatches(root, vis)
		}
		return n
	}
	if n, ok := st.cellCount(cq.root); ok {
		s.aggAnswers.Add(1)
		if vis != nil && vis.cutoff != 0 {
			n -= s.invisibleMatches(cq.root, vis)
		}
		return n
	}
	cand := st.candidates(cq.root)
	if cand.all {
		s.fullScans.Add(1)
	} else {
		s.idxAnswers.Add(1)
	}
	pred := cand.residual(cq.root)
	n := 0
	scanned := 0
	cand.each(false, func(idx uint32) bool {
		scanned++
		is := &st.issues[idx]
		if pred.eval(st, is, idx) && vis.visible(is, idx) {
			n++
		}
		return true
	})
	s.scanned.Add(uint64(scanned))
	return n
}

// cellCount answers a count from a label's cells (labelCells) when the query's top-level
// conjuncts are one label clause whose label was known when it was compiled, bounds on either the
// creation date (while creation order is index order) or the resolution date, and clauses that
// read only status, resolution and priority: the shape of the connector's remediation counts
// ("labels = security AND statusCategory != Done AND priority = High AND created < -30d") and of
// its resolved-ticket sample. It reports false for any other query.
func (st *store) cellCount(root cnode) (int, bool) {
	var label uint32
	hasLabel := false
	clo, chi, hasC := int64(minMs), int64(maxMs), false
	rlo, rhi, hasR := int64(minMs), int64(maxMs), false
	var rest []cnode
	for _, c := range conjuncts(root) {
		switch l := c.(type) {
		case labelLeaf:
			if hasLabel || l.mode != lmAny || len(l.ids) != 1 || len(l.names) != 1 {
				return 0, false
			}
			label, hasLabel = l.ids[0], true
			continue
		case dateLeaf:
			switch {
			case l.neg || l.empty || l.notEmpty:
				return 0, false
			case l.field == dfCreated && st.createdSorted:
				clo, chi, hasC = max(clo, l.lo), min(chi, l.hi), true
			case l.field == dfResolved:
				rlo, rhi, hasR = max(rlo, l.lo), min(rhi, l.hi), true
			default:
				return 0, false
			}
			continue
		}
		if !cellDecidable(c) {
			return 0, false
		}
		rest = append(rest, c)
	}
	if !hasLabel || (hasC && hasR) {
		return 0, false
	}
	// A creation range is an index range (every issue has a creation date).
	var lo, hi uint32
	if hasC {
		lo = uint32(sort.Search(len(st.issues), func(i int) bool { return st.issues[i].created >= clo }))
		hi = uint32(sort.Search(len(st.issues), func(i int) bool { return st.issues[i].created > chi }))
	}
	pred := andC{kids: rest}
	var probe issue
	n := 0
	for k, cell := range st.labelCells[label] {
		probe.status, probe.res, probe.priority = k.dims()
		if !pred.eval(st, &probe, 0) {
			continue
		}
		switch {
		case hasR:
			list := cell.byRes
			i := sort.Search(len(list), func(i int) bool { return list[i].at >= rlo })
			j := sort.Search(len(list), func(i int) bool { return list[i].at > rhi })
			n += max(j-i, 0)
		case hasC:
			list := cell.byIdx
			i := sort.Search(len(list), func(i int) bool { return list[i] >= lo })
			j := sort.Search(len(list), func(i int) bool { return list[i] >= hi })
			n += max(j-i, 0)
		default:
			n += len(cell.byIdx)
		}
	}
	return n, true
}

// cellDecidable reports whether a predicate reads nothing but an issue's status, resolution and
// priority, so that it can be decided per labelCells cell.
func cellDecidable(n cnode) bool {
	switch n := n.(type) {
	case maskLeaf:
		return n.field == mfStatus || n.field == mfRes || n.field == mfPriority
	case andC:
		return allKids(n.kids, cellDecidable)
	case orC:
		return allKids(n.kids, cellDecidable)
	case notC:
		return cellDecidable(n.kid)
	case constC:
		return true
	}
	return false
}

// invisibleMatches counts matching issues hidden by the search lag (found via the recent-change
// log, so the cost is the number of recent changes, not the site size).
func (s *Sim) invisibleMatches(root cnode, vis *visibility) int {
	st := s.st
	seen := map[uint32]bool{}
	n := 0
	for i := len(st.recent) - 1; i >= 0 && st.recent[i].at >= vis.cutoff; i-- {
		idx := st.recent[i].idx
		if seen[idx] {
			continue
		}
		seen[idx] = true
		is := &st.issues[idx]
		if vis.visible(is, idx) {
			continue
		}
		if root == nil || root.eval(st, is, idx) {
			n++
		}
	}
	return n
}

// cubeCount sums the cube cells whose dimensions satisfy a cubeable predicate.
func (s *Sim) cubeCount(root cnode) int64 {
	st := s.st
	var total int64
	if !root.refsProject() {
		var probe issue
		for cell, n := range st.siteCube {
			if n == 0 {
				continue
			}
			probe.itype, probe.status, probe.res = cubeDims(cell)
			if root.eval(st, &probe, 0) {
				total += n
			}
		}
		return total
	}
	projects := s.projectRestriction(root)
	var probe issue
	countProject := func(p uint32) {
		probe.project = p
		cube := &st.projects[p].cube
		for cell, n := range cube {
			if n == 0 {
				continue
			}
			probe.itype, probe.status, probe.res = cubeDims(cell)
			if root.eval(st, &probe, 0) {
				total += int64(n)
			}
		}
	}
	if projects != nil {
		for _, p := range projects {
			countProject(p)
		}
		return total
	}
	for p := range st.projects {
		countProject(uint32(p))
	}
	return total
}

// projectRestriction returns the projects a positive top-level project clause allows, or nil.
func (s *Sim) projectRestriction(root cnode) []uint32 {
	var best []uint32
	found := false
	for _, c := range conjuncts(root) {
		if l, ok := c.(projLeaf); ok && !l.neg {
			var ps []uint32
			for p := range l.set {
				ps = append(ps, p)
			}
			if !found || len(ps) < len(best) {
				best, found = ps, true
			}
		}
	}
	if !found {
		return nil
	}
	if best == nil {
		best = []uint32{}
	}
	return best
}

// search returns up to limit matching issue indexes after skipping offset, in the query's order,
// and whether more matches exist.
func (s *Sim) searchLocked(cq *compiledQuery, vis *visibility, offset, limit int) ([]uint32, bool) {
	st := s.st
	var cand candidateSet
	if cq.root == nil {
		cand = candidateSet{all: true, lo: 0, hi: len(st.issues), size: len(st.issues), idxOrdered: true}
	} else {
		cand = st.candidates(cq.root)
	}
	if cand.all {
		s.fullScans.Add(1)
	} else {
		s.idxAnswers.Add(1)
	}
	match := func(idx uint32) bool {
		is := &st.issues[idx]
		return (cq.root == nil || cq.root.eval(st, is, idx)) && vis.visible(is, idx)
	}
	scanned := 0
	defer func() { s.scanned.Add(uint64(scanned)) }()

	// Streaming: when the candidate order already is the requested order, stop early.
	stream, desc := false, false
	switch {
	case len(cq.order) == 0:
		stream = cand.idxOrdered
	case len(cq.order) == 1:
		k := cq.order[0]
		desc = k.desc
		switch k.field {
		case "resolved", "resolutiondate":
			stream = cand.resOrdered
		case "id", "created", "createddate":
			stream = cand.idxOrdered && (k.field == "id" || st.createdSorted)
		}
	}
	if stream {
		var page []uint32
		more := false
		skipped := 0
		cand.each(desc, func(idx uint32) bool {
			scanned++
			if !match(idx) {
				return true
			}
			if skipped < offset {
				skipped++
				return true
			}
			if len(page) == limit {
				more = true
				return false
			}
			page = append(page, idx)
			return true
		})
		return page, more
	}
	var all []uint32
	cand.each(false, func(idx uint32) bool {
		scanned++
		if match(idx) {
			all = append(all, idx)
		}
		return true
	})
	order := cq.order
	if len(order) == 0 {
		order = []sortKey{{field: "id"}}
	}
	slices.SortStableFunc(all, func(a, b uint32) int { return st.compareIssues(order, a, b) })
	if offset >= len(all) {
		return nil, false
	}
	end := min(offset+limit, len(all))
	return all[offset:end], end < len(all)
}

// compareIssues orders two issues by sort keys; empty dates sort as the largest value.
func (st *store) compareIssues(keys []sortKey, a, b uint32) int {
	ia, ib := &st.issues[a], &st.issues[b]
	for _, k := range keys {
		c := 0
		switch k.field {
		case "created", "createddate":
			c = cmpInt(ia.created, ib.created)
		case "updated", "updateddate":
			c = cmpInt(ia.updated, ib.updated)
		case "resolved", "resolutiondate":
			va, vb := ia.resolved, ib.resolved
			if va == 0 {
				va = maxMs
			}
			if vb == 0 {
				vb = maxMs
			}
			c = cmpInt(va, vb)
		case "key", "issuekey":
			c = strings.Compare(st.projects[ia.project].key, st.projects[ib.project].key)
			if c == 0 {
				c = cmpInt(int64(ia.num), int64(ib.num))
			}
		case "priority":
			// Highest has the largest rank, so DESC lists the most urgent first.
			c = cmpInt(-int64(ia.priority), -int64(ib.priority))
		case "id":
			c = cmpInt(int64(a), int64(b))
		}
		if k.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return cmpInt(int64(a), int64(b))
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// dropTrivialDates replaces creation-date bounds that every issue satisfies (such as
// `created <= now()`, a common way to make a "count everything" query bounded) with true, so that
// such counts stay answerable from the cubes. It relies on creation order being index order.
func (st *store) dropTrivialDates(n cnode) cnode {
	switch n := n.(type) {
	case andC:
		out := andC{kids: make([]cnode, len(n.kids))}
		for i, k := range n.kids {
			out.kids[i] = st.dropTrivialDates(k)
		}
		return out
	case orC:
		out := orC{kids: make([]cnode, len(n.kids))}
		for i, k := range n.kids {
			out.kids[i] = st.dropTrivialDates(k)
		}
		return out
	case notC:
		return notC{st.dropTrivialDates(n.kid)}
	case dateLeaf:
		if n.field != dfCreated || n.neg || n.empty || !st.createdSorted || len(st.issues) == 0 {
			return n
		}
		if n.notEmpty || (n.lo <= st.issues[0].created && n.hi >= st.issues[len(st.issues)-1].created) {
			return constC{v: true}
		}
	}
	return n
}
