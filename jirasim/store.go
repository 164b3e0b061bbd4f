package jirasim

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// issueIDBase is the id of the first issue; ids are derived from the slice index instead of being
// stored, which keeps a million issues small.
const issueIDBase = 10000

// projectIDBase is the id of the first project, derived the same way.
const projectIDBase = 10000

// issue is the compact in-memory form of one issue (72 bytes plus an optional extension). Keys and
// ids are derived (project key + num, issueIDBase + index), labels are an interned set id, and
// summaries of generated issues are derived on read, so a million seeded issues cost ~70 MB.
type issue struct {
	created  int64 // unix ms
	updated  int64 // unix ms
	resolved int64 // unix ms; 0 when unresolved
	summary  string
	ext      *issueExt
	project  uint32
	num      uint32
	labels   uint32 // label-set id; 0 is the empty set
	reporter uint32 // user index + 1; 0 none
	assignee uint32 // user index + 1; 0 none
	itype    uint8
	status   uint8
	res      uint8
	priority uint8
}

// issueExt holds the rarely present, larger parts of an issue.
type issueExt struct {
	descText  string          // plain/wiki text (v2, DC, or flattened ADF)
	descADF   json.RawMessage // stored ADF document when written through v3
	custom    map[string]cfValue
	changelog []changeGroup
}

// cfValue is a stored custom-field value. Exactly one member is meaningful, by field type.
type cfValue struct {
	options []string        // multiselect/checkboxes/select: option ids
	strs    []string        // labels
	text    string          // textfield, or textarea written as a string
	adf     json.RawMessage // textarea written as ADF
}

type changeGroup struct {
	id      int64
	author  uint32 // user index + 1
	created int64
	items   []ChangeItem
}

type project struct {
	key             string
	name            string
	createForbidden bool
	issues          []uint32 // issue index by num-1
	cube            [cubeSize]int32
	lead            uint32
}

type user struct {
	User
	timeZone string
}

type customField struct {
	CustomField
	num       int
	typeMask  uint32 // bit per issue type the field is on
	optByID   map[string]string
	optByName map[string]string // lower-case value -> id
}

type reqKey struct {
	project uint32
	itype   uint8
	field   string
}

// resEntry is one element of a resolved-date index, ordered by (at, idx).
type resEntry struct {
	at  int64
	idx uint32
}

func resLess(a, b resEntry) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return a.idx < b.idx
}

func resCmp(a, b resEntry) int {
	switch {
	case resLess(a, b):
		return -1
	case resLess(b, a):
		return 1
	}
	return 0
}

// recentChange remembers when an issue last became different, for the search-lag fault.
type recentChange struct {
	at  int64
	idx uint32
}

// store is the site's data. It is guarded by Sim.mu; none of its methods lock.
type store struct {
	flavor Flavor

	issues   []issue
	projects []*project
	projKey  map[string]uint32 // upper-case key -> index

	users     []*user
	userByAny map[string]uint32 // accountId, name, key, lower email -> index

	labelNames  []string // label id -> name; id 0 unused
	labelIDs    map[string]uint32
	labelSets   [][]uint32 // set id -> sorted label ids; set 0 empty
	labelSetIdx map[string]uint32

	// labelIssues lists, per label, the issue indexes carrying it in ascending order.
	labelIssues map[uint32][]uint32
	// labelResolved lists, per label, resolved issues carrying it ordered by resolution date.
	labelResolved map[uint32][]resEntry
	// labelCells partitions each label's issues by status, resolution and priority (see
	// labelCells).
	labelCells map[uint32]labelCells
	// resolvedIdx lists every resolved issue ordered by resolution date.
	resolvedIdx []resEntry
	// siteCube sums the project cubes.
	siteCube [cubeSize]int64
	// createdSorted is true while issue index order equals creation order, which turns created
	// ranges into index ranges.
	createdSorted bool

	fields    []*customField
	fieldByID map[string]*customField
	required  map[reqKey]bool

	changeSeq int64
	recent    []recentChange
}

func newStore(flavor Flavor) *store {
	st := &store{
		flavor:        flavor,
		projKey:       map[string]uint32{},
		userByAny:     map[string]uint32{},
		labelNames:    []string{""},
		labelIDs:      map[string]uint32{},
		labelSets:     [][]uint32{nil},
		labelSetIdx:   map[string]uint32{"": 0},
		labelIssues:   map[uint32][]uint32{},
		labelResolved: map[uint32][]resEntry{},
		labelCells:    map[uint32]labelCells{},
		createdSorted: true,
		fieldByID:     map[string]*customField{},
		required:      map[reqKey]bool{},
		changeSeq:     10000,
	}
	return st
}

// ---- users ----

func (st *store) addUser(u User) (uint32, error) {
	if u.Email == "" && u.Name == "" && u.AccountID == "" {
		return 0, fmt.Errorf("add user: an email, name or account id is required")
	}
	if u.Email == "" {
		base := u.Name
		if base == "" {
			base = u.AccountID
		}
		u.Email = base + "@example.com"
	}
	local, _, _ := strings.Cut(u.Email, "@")
	if u.Name == "" {
		u.Name = local
	}
	if u.Key == "" {
		u.Key = "JIRAUSER" + strconv.Itoa(10000+len(st.users))
	}
	if u.AccountID == "" {
		u.AccountID = fmt.Sprintf("712020:%08x-%04x-4000-8000-%012x", 0x5b10a284+len(st.users), len(st.users), len(st.users)*7919)
	}
	if u.DisplayName == "" {
		u.DisplayName = local
	}
	for _, k := range []string{u.AccountID, u.Name, u.Key, strings.ToLower(u.Email)} {
		if _, dup := st.userByAny[k]; dup {
			return 0, fmt.Errorf("add user: %q already exists", k)
		}
	}
	u.Active = true
	idx := uint32(len(st.users))
	st.users = append(st.users, &user{User: u, timeZone: "UTC"})
	for _, k := range []string{u.AccountID, u.Name, u.Key, strings.ToLower(u.Email)} {
		st.userByAny[k] = idx
	}
	return idx, nil
}

// findUser resolves an accountId, user name/key or email.
func (st *store) findUser(v string) (uint32, bool) {
	if i, ok := st.userByAny[v]; ok {
		return i, true
	}
	i, ok := st.userByAny[strings.ToLower(v)]
	return i, ok
}

// ---- projects ----

func validProjectKey(k string) bool {
	if len(k) < 2 || len(k) > 10 || k[0] < 'A' || k[0] > 'Z' {
		return false
	}
	for i := 1; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (st *store) addProject(spec ProjectSpec) (uint32, error) {
	key := strings.ToUpper(spec.Key)
	if !validProjectKey(key) {
		return 0, fmt.Errorf("add project: key %q must be 2-10 upper-case letters/digits starting with a letter", spec.Key)
	}
	if _, dup := st.projKey[key]; dup {
		return 0, fmt.Errorf("add project: key %q already exists", key)
	}
	name := spec.Name
	if name == "" {
		name = key + " project"
	}
	idx := uint32(len(st.projects))
	st.projects = append(st.projects, &project{key: key, name: name, createForbidden: spec.CreateForbidden})
	st.projKey[key] = idx
	return idx, nil
}

// findProject resolves a project key, id or (case-insensitive) name.
func (st *store) findProject(v string) (uint32, bool) {
	if i, ok := st.projKey[strings.ToUpper(v)]; ok {
		return i, true
	}
	if n, err := strconv.Atoi(v); err == nil {
		i := n - projectIDBase
		if i >= 0 && i < len(st.projects) {
			return uint32(i), true
		}
	}
	for i, p := range st.projects {
		if strings.EqualFold(p.name, v) {
			return uint32(i), true
		}
	}
	return 0, false
}

func projectID(i uint32) string { return strconv.Itoa(projectIDBase + int(i)) }

// ---- issues: identity ----

func issueID(idx uint32) string { return strconv.Itoa(issueIDBase + int(idx)) }

func (st *store) issueKey(idx uint32) string {
	is := &st.issues[idx]
	return st.projects[is.project].key + "-" + strconv.FormatUint(uint64(is.num), 10)
}

// findIssue resolves an issue id or key.
func (st *store) findIssue(v string) (uint32, bool) {
	if n, err := strconv.Atoi(v); err == nil {
		i := n - issueIDBase
		if i >= 0 && i < len(st.issues) {
			return uint32(i), true
		}
		return 0, false
	}
	pk, num, ok := splitIssueKey(v)
	if !ok {
		return 0, false
	}
	p, ok := st.projKey[pk]
	if !ok {
		return 0, false
	}
	list := st.projects[p].issues
	if num < 1 || num > len(list) {
		return 0, false
	}
	return list[num-1], true
}

func splitIssueKey(v string) (string, int, bool) {
	i := strings.LastIndexByte(v, '-')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(v[i+1:])
	if err != nil || n < 1 {
		return "", 0, false
	}
	return strings.ToUpper(v[:i]), n, true
}

func (st *store) summary(idx uint32) string {
	is := &st.issues[idx]
	if is.summary != "" {
		return is.summary
	}
	// Generated issues derive their summary from their identity instead of storing it.
	return fmt.Sprintf("%s finding %d in %s", issueTypes[is.itype].name, is.num, st.projects[is.project].key)
}

// ---- labels ----

func (st *store) labelID(name string) uint32 {
	if id, ok := st.labelIDs[name]; ok {
		return id
	}
	id := uint32(len(st.labelNames))
	st.labelNames = append(st.labelNames, name)
	st.labelIDs[name] = id
	return id
}

// internLabels returns the set id of a label list (deduplicated, order-insensitive).
func (st *store) internLabels(names []string) uint32 {
	if len(names) == 0 {
		return 0
	}
	ids := make([]uint32, 0, len(names))
	for _, n := range names {
		ids = append(ids, st.labelID(n))
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(strconv.FormatUint(uint64(id), 36))
		b.WriteByte(',')
	}
	k := b.String()
	if sid, ok := st.labelSetIdx[k]; ok {
		return sid
	}
	sid := uint32(len(st.labelSets))
	st.labelSets = append(st.labelSets, ids)
	st.labelSetIdx[k] = sid
	return sid
}

func (st *store) labelStrings(set uint32) []string {
	ids := st.labelSets[set]
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = st.labelNames[id]
	}
	sort.Strings(out)
	return out
}

func (st *store) hasLabel(set, label uint32) bool {
	_, ok := slices.BinarySearch(st.labelSets[set], label)
	return ok
}

// ---- index maintenance ----

func insertSortedU32(s []uint32, v uint32) []uint32 {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	return slices.Insert(s, i, v)
}

func removeSortedU32(s []uint32, v uint32) []uint32 {
	i, found := slices.BinarySearch(s, v)
	if !found {
		return s
	}
	return slices.Delete(s, i, i+1)
}

func insertRes(s []resEntry, e resEntry) []resEntry {
	i, found := slices.BinarySearchFunc(s, e, resCmp)
	if found {
		return s
	}
	return slices.Insert(s, i, e)
}

func removeRes(s []resEntry, e resEntry) []resEntry {
	i, found := slices.BinarySearchFunc(s, e, resCmp)
	if !found {
		return s
	}
	return slices.Delete(s, i, i+1)
}

// indexAdd adds an issue's contribution to every aggregate and index.
func (st *store) indexAdd(idx uint32) {
	is := &st.issues[idx]
	cell := cubeCell(is.itype, is.status, is.res)
	st.projects[is.project].cube[cell]++
	st.siteCube[cell]++
	for _, l := range st.labelSets[is.labels] {
		st.labelIssues[l] = insertSortedU32(st.labelIssues[l], idx)
		cell := st.cellOf(l, is)
		cell.byIdx = insertSortedU32(cell.byIdx, idx)
		if is.resolved != 0 {
			st.labelResolved[l] = insertRes(st.labelResolved[l], resEntry{is.resolved, idx})
			cell.byRes = insertRes(cell.byRes, resEntry{is.resolved, idx})
		}
	}
	if is.resolved != 0 {
		st.resolvedIdx = insertRes(st.resolvedIdx, resEntry{is.resolved, idx})
	}
}

// indexRemove subtracts an issue's contribution; it is called before a mutation and indexAdd after.
func (st *store) indexRemove(idx uint32) {
	is := &st.issues[idx]
	cell := cubeCell(is.itype, is.status, is.res)
	st.projects[is.project].cube[cell]--
	st.siteCube[cell]--
	for _, l := range st.labelSets[is.labels] {
		st.labelIssues[l] = removeSortedU32(st.labelIssues[l], idx)
		cell := st.cellOf(l, is)
		cell.byIdx = removeSortedU32(cell.byIdx, idx)
		if is.resolved != 0 {
			st.labelResolved[l] = removeRes(st.labelResolved[l], resEntry{is.resolved, idx})
			cell.byRes = removeRes(cell.byRes, resEntry{is.resolved, idx})
		}
		if len(cell.byIdx) == 0 {
			delete(st.labelCells[l], cellKeyOf(is))
		}
	}
	if is.resolved != 0 {
		st.resolvedIdx = removeRes(st.resolvedIdx, resEntry{is.resolved, idx})
	}
}

// labelCells partitions one label's issues by (status, resolution, priority), holding only the
// cells that have issues. A count of "this label, a condition on status, resolution and
// priority, a creation or resolution range" — the shape of the connector's evidence counts and
// of the resolved-ticket sample's total on Data Center — is then two binary searches per cell the
// condition admits, as Jira answers it from its index, instead of a walk over every issue that
// carries the label (see cellCount).
type labelCells map[cellKey]*cellLists

// cellKey is a (status, resolution slot, priority) triple.
type cellKey uint16

func cellKeyOf(is *issue) cellKey {
	return cellKey((int(is.status)*int(numResolutionSlots)+int(is.res))*int(numPriorities) + int(is.priority))
}

// dims returns the status, resolution slot and priority of the cell.
func (k cellKey) dims() (status, res, priority uint8) {
	priority = uint8(int(k) % int(numPriorities))
	rest := int(k) / int(numPriorities)
	return uint8(rest / int(numResolutionSlots)), uint8(rest % int(numResolutionSlots)), priority
}

// cellLists are one cell's issues: byIdx by ascending index (creation order while
// createdSorted), byRes the resolved ones by resolution date.
type cellLists struct {
	byIdx []uint32
	byRes []resEntry
}

// cellOf returns the cell of label l that issue is belongs to, creating it on first use.
func (st *store) cellOf(l uint32, is *issue) *cellLists {
	lc := st.labelCells[l]
	if lc == nil {
		lc = labelCells{}
		st.labelCells[l] = lc
	}
	k := cellKeyOf(is)
	c := lc[k]
	if c == nil {
		c = &cellLists{}
		lc[k] = c
	}
	return c
}

// appendIssue stores a new issue and indexes it. The caller fills every field but num.
func (st *store) appendIssue(is issue) uint32 {
	idx := uint32(len(st.issues))
	if n := len(st.issues); n > 0 && is.created < st.issues[n-1].created {
		st.createdSorted = false
	}
	p := st.projects[is.project]
	is.num = uint32(len(p.issues) + 1)
	st.issues = append(st.issues, is)
	p.issues = append(p.issues, idx)
	st.indexAdd(idx)
	st.touch(idx, is.updated)
	return idx
}

// touch records that an issue changed at `at` (ms), feeding the search-lag window.
func (st *store) touch(idx uint32, at int64) {
	st.recent = append(st.recent, recentChange{at, idx})
	// Keep the window bounded: entries older than a day can never be inside a lag window.
	if len(st.recent) > 4096 && st.recent[0].at < at-int64(24*time.Hour/time.Millisecond) {
		cut := sort.Search(len(st.recent), func(i int) bool {
			return st.recent[i].at >= at-int64(24*time.Hour/time.Millisecond)
		})
		st.recent = append(st.recent[:0:0], st.recent[cut:]...)
	}
}

// ---- custom fields ----

func (st *store) addField(spec CustomFieldSpec) (*customField, error) {
	if spec.Name == "" {
		return nil, fmt.Errorf("add custom field: name is required")
	}
	switch spec.Type {
	case FieldMultiSelect, FieldCheckboxes, FieldSelect:
		if len(spec.Options) == 0 {
			return nil, fmt.Errorf("add custom field %q: a %s field needs options", spec.Name, spec.Type)
		}
	case FieldLabels, FieldTextField, FieldTextArea:
	default:
		return nil, fmt.Errorf("add custom field %q: unsupported type %q", spec.Name, spec.Type)
	}
	for _, f := range st.fields {
		if strings.EqualFold(f.Name, spec.Name) {
			return nil, fmt.Errorf("add custom field: %q already exists", spec.Name)
		}
	}
	num := 10100 + len(st.fields)
	f := &customField{
		CustomField: CustomField{ID: "customfield_" + strconv.Itoa(num), Name: spec.Name, Type: spec.Type, IssueTypes: spec.IssueTypes},
		num:         num,
		optByID:     map[string]string{},
		optByName:   map[string]string{},
	}
	if len(spec.IssueTypes) == 0 {
		f.typeMask = 1<<numIssueTypes - 1
	}
	for _, tn := range spec.IssueTypes {
		t, ok := lookupIssueType(tn)
		if !ok {
			return nil, fmt.Errorf("add custom field %q: unknown issue type %q", spec.Name, tn)
		}
		f.typeMask |= 1 << t
	}
	for i, o := range spec.Options {
		id := strconv.Itoa(num*10 + i + 1)
		f.Options = append(f.Options, FieldOption{ID: id, Value: o})
		f.optByID[id] = o
		f.optByName[strings.ToLower(o)] = id
	}
	st.fields = append(st.fields, f)
	st.fieldByID[f.ID] = f
	return f, nil
}

// findField resolves customfield_N, cf[N] or a field name.
func (st *store) findField(v string) (*customField, bool) {
	if f, ok := st.fieldByID[v]; ok {
		return f, true
	}
	lv := strings.ToLower(v)
	if strings.HasPrefix(lv, "cf[") && strings.HasSuffix(lv, "]") {
		f, ok := st.fieldByID["customfield_"+v[3:len(v)-1]]
		return f, ok
	}
	for _, f := range st.fields {
		if strings.EqualFold(f.Name, v) {
			return f, true
		}
	}
	return nil, false
}

func (f *customField) onType(t uint8) bool { return f.typeMask&(1<<t) != 0 }

func (f *customField) schemaCustom() string {
	return "com.atlassian.jira.plugin.system.customfieldtypes:" + string(f.Type)
}

// ---- default site ----

// defaultFields are the custom fields every simulated site has, matching the connector's default
// mapping: framework references (multi-select), security labels (labels CF), finding id
// (textfield) and finding details (textarea).
func (st *store) addDefaultFields() {
	defs := []CustomFieldSpec{
		{Name: "Framework references", Type: FieldMultiSelect, Options: []string{"SOC 2 CC8.1", "SOC 2 CC7.1", "ISO 27001 A.8.32", "ISO 27001 A.8.8", "PCI DSS 6.3", "NIST 800-53 SI-2"}},
		{Name: "Security labels", Type: FieldLabels},
		{Name: "Finding ID", Type: FieldTextField},
		{Name: "Finding details", Type: FieldTextArea},
	}
	for _, d := range defs {
		if _, err := st.addField(d); err != nil {
			panic(fmt.Sprintf("jirasim: default field table is inconsistent: %v", err))
		}
	}
}

// ---- time formatting ----

// jiraTimeLayout is Jira's timestamp format: millisecond precision, numeric offset without colon.
const jiraTimeLayout = "2006-01-02T15:04:05.000-0700"

func fmtMillis(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(jiraTimeLayout)
}
