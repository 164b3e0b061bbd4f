package jirasim

import (
	"strconv"
	"strings"
)

// The site's fixed metadata. Statuses, issue types, resolutions and priorities are fixed per site
// so that the count aggregates (a dense cube per project) have a fixed shape; custom fields,
// projects, users and issues are dynamic.

type categoryDef struct {
	id    int
	key   string
	name  string
	color string
}

var categories = [...]categoryDef{
	{2, CategoryNew, "To Do", "blue-gray"},
	{4, CategoryIndeterminate, "In Progress", "yellow"},
	{3, CategoryDone, "Done", "green"},
}

const (
	catNew uint8 = iota
	catIndeterminate
	catDone
)

type statusDef struct {
	id   string
	name string
	desc string
	cat  uint8
	// naturalRes is the resolution a human transition to this status sets by default.
	naturalRes uint8
}

const (
	stToDo uint8 = iota
	stInProgress
	stDone
	stWontDo
	stCancelled
	numStatuses
)

var statuses = [numStatuses]statusDef{
	{StatusToDo, "To Do", "Work that has not been started.", catNew, 0},
	{StatusInProgress, "In Progress", "The issue is currently being worked on.", catIndeterminate, 0},
	{StatusDone, "Done", "Work has been completed.", catDone, resDone},
	{StatusWontDo, "Won't Do", "The team decided not to do this.", catDone, resWontDo},
	{StatusCancelled, "Cancelled", "The work was cancelled.", catDone, resCancelled},
}

type issueTypeDef struct {
	id, name, desc string
}

const (
	itTask uint8 = iota
	itBug
	itStory
	itEpic
	itVulnerability
	numIssueTypes
)

var issueTypes = [numIssueTypes]issueTypeDef{
	{IssueTypeTask, "Task", "A small, distinct piece of work."},
	{IssueTypeBug, "Bug", "A problem or error."},
	{IssueTypeStory, "Story", "A user story."},
	{IssueTypeEpic, "Epic", "A big user story that needs to be broken down."},
	{IssueTypeVulnerability, "Vulnerability", "A security weakness found by a scanner or a person."},
}

type resolutionDef struct {
	id, name, desc string
}

// Resolution index 0 means "unresolved"; the table is indexed by resolution-1.
const (
	resNone uint8 = iota
	resDone
	resWontDo
	resDuplicate
	resCannotReproduce
	resCancelled
	numResolutionSlots
)

var resolutions = [numResolutionSlots - 1]resolutionDef{
	{ResolutionDone, "Done", "Work has been completed on this issue."},
	{ResolutionWontDo, "Won't Do", "This issue won't be actioned."},
	{ResolutionDuplicate, "Duplicate", "The problem is a duplicate of an existing issue."},
	{ResolutionCannotReproduce, "Cannot Reproduce", "This issue could not be reproduced."},
	{ResolutionCancelled, "Cancelled", "The work was cancelled."},
}

type priorityDef struct {
	id, name, icon string
}

const (
	prHighest uint8 = iota
	prHigh
	prMedium
	prLow
	prLowest
	numPriorities
)

var priorities = [numPriorities]priorityDef{
	{"1", "Highest", "highest.svg"},
	{"2", "High", "high.svg"},
	{"3", "Medium", "medium.svg"},
	{"4", "Low", "low.svg"},
	{"5", "Lowest", "lowest.svg"},
}

// transitionDef is one workflow transition. A transition with several from-statuses shares one id
// (Jira does the same for common transitions).
type transitionDef struct {
	id   string
	name string
	from []uint8
	to   uint8
	// needsResolution puts a required resolution field on the transition screen.
	needsResolution bool
}

var workflow = []transitionDef{
	{TransitionStartWork, "Start work", []uint8{stToDo}, stInProgress, false},
	{TransitionStopWork, "Stop work", []uint8{stInProgress}, stToDo, false},
	{TransitionResolve, "Resolve", []uint8{stInProgress}, stDone, true},
	{TransitionWontDo, "Decline", []uint8{stInProgress}, stWontDo, true},
	{TransitionCancel, "Abandon", []uint8{stInProgress}, stCancelled, true},
	{TransitionReopen, "Reopen issue", []uint8{stDone, stWontDo, stCancelled}, stToDo, false},
}

// transitionsFrom lists the transitions available from a status, in workflow order.
func transitionsFrom(status uint8) []*transitionDef {
	var out []*transitionDef
	for i := range workflow {
		for _, f := range workflow[i].from {
			if f == status {
				out = append(out, &workflow[i])
				break
			}
		}
	}
	return out
}

// cubeSize is the number of cells of a count cube: issue type × status × resolution slot.
const cubeSize = int(numIssueTypes) * int(numStatuses) * int(numResolutionSlots)

func cubeCell(itype, status, res uint8) int {
	return (int(itype)*int(numStatuses)+int(status))*int(numResolutionSlots) + int(res)
}

func cubeDims(cell int) (itype, status, res uint8) {
	res = uint8(cell % int(numResolutionSlots))
	cell /= int(numResolutionSlots)
	status = uint8(cell % int(numStatuses))
	itype = uint8(cell / int(numStatuses))
	return
}

// Lookup helpers: Jira matches names case-insensitively and accepts ids wherever names are allowed.

func lookupStatus(v string) (uint8, bool) {
	for i, s := range statuses {
		if s.id == v || strings.EqualFold(s.name, v) {
			return uint8(i), true
		}
	}
	return 0, false
}

func lookupIssueType(v string) (uint8, bool) {
	for i, t := range issueTypes {
		if t.id == v || strings.EqualFold(t.name, v) {
			return uint8(i), true
		}
	}
	return 0, false
}

func lookupResolution(v string) (uint8, bool) {
	for i, r := range resolutions {
		if r.id == v || strings.EqualFold(r.name, v) {
			return uint8(i + 1), true
		}
	}
	return 0, false
}

func lookupPriority(v string) (uint8, bool) {
	for i, p := range priorities {
		if p.id == v || strings.EqualFold(p.name, v) {
			return uint8(i), true
		}
	}
	return 0, false
}

func lookupCategory(v string) (uint8, bool) {
	for i, c := range categories {
		if strings.EqualFold(c.key, v) || strings.EqualFold(c.name, v) || strconv.Itoa(c.id) == v {
			return uint8(i), true
		}
	}
	return 0, false
}

func resolutionName(r uint8) string {
	if r == resNone {
		return ""
	}
	return resolutions[r-1].name
}
