// Package apperr is the vocabulary of use-case failures: what a service answers when it cannot
// do what it was asked for a reason the caller can act on. Each failure has a Kind (the request
// is invalid, the thing does not exist, its state forbids it, the tenant's Jira failed, a
// dependency is down, the work is still running), a stable Code for programs, the Field at fault
// when there is one, and a Message safe to show to the tenant (no secret, no network error text,
// no internal detail).
//
// Services return an *Error for these and any other error for an internal failure. Each
// transport maps a Kind to its own answer in one place (the HTTP API: api/errors.go), so the
// same use case answers the same way whoever calls it.
package apperr

import "fmt"

// Kind classifies a failure by what the caller can do about it.
type Kind uint8

// Kinds of failure.
const (
	// KindInvalid: the request is wrong; nothing was changed. Fix it and retry.
	KindInvalid Kind = iota + 1
	// KindNotFound: no such thing in the caller's organization (also for other organizations'
	// things: existence is never revealed).
	KindNotFound
	// KindConflict: not possible in the thing's current state.
	KindConflict
	// KindUpstream: the tenant's Jira site (or Atlassian) failed or could not be reached.
	KindUpstream
	// KindUnavailable: a dependency of the service is down; retry later.
	KindUnavailable
	// KindTimeout: the work started and is still running; its result appears later.
	KindTimeout
)

// Error is a use-case failure.
type Error struct {
	Kind Kind
	// Code is stable and meant for programs, e.g. "invalid_field" or "credentials_rejected".
	Code string
	// Field names the offending input as the caller spelled it ("site_url",
	// "config.sync_cadence"); empty when no single field is at fault.
	Field string
	// Message is for people and safe to show to the tenant.
	Message string
}

func (e *Error) Error() string { return e.Message }

// New returns a failure of kind with code and message, naming field when it is not empty.
func New(kind Kind, code, field, message string) *Error {
	return &Error{Kind: kind, Code: code, Field: field, Message: message}
}

// Invalid is the invalid_field failure of one input field; the message starts with the field's
// name.
func Invalid(field, format string, args ...any) *Error {
	return New(KindInvalid, "invalid_field", field, field+": "+fmt.Sprintf(format, args...))
}

// NotFound is the not_found failure of a thing of the caller's organization ("connection").
func NotFound(what string) *Error {
	return New(KindNotFound, "not_found", "", what+" not found")
}

// Conflict is a failure because of the current state of what the request is about.
func Conflict(code, message string) *Error {
	return New(KindConflict, code, "", message)
}
