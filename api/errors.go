package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/apperr"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

// Error is the JSON error body of every failed request:
//
//	{"error": {"code": "invalid_field", "message": "name: must not be empty", "field": "name"}}
//
// code is stable and meant for programs; message is for people; field names the offending input
// when there is one.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Message }

type errorBody struct {
	Error *Error `json:"error"`
}

// kindStatus is the HTTP status of each kind of use-case failure: the one place services'
// failures (apperr) meet HTTP.
var kindStatus = map[apperr.Kind]int{
	apperr.KindInvalid:     http.StatusBadRequest,
	apperr.KindNotFound:    http.StatusNotFound,
	apperr.KindConflict:    http.StatusConflict,
	apperr.KindUpstream:    http.StatusBadGateway,
	apperr.KindUnavailable: http.StatusServiceUnavailable,
	apperr.KindTimeout:     http.StatusGatewayTimeout,
}

// fromFailure is the API error of a use-case failure: its code, field and message as they are,
// under its kind's status.
func fromFailure(f *apperr.Error) *Error {
	status, ok := kindStatus[f.Kind]
	if !ok {
		status = http.StatusInternalServerError
	}
	return &Error{Status: status, Code: f.Code, Field: f.Field, Message: f.Message}
}

// keyError maps the key lifecycle's errors (tenancy's own, not apperr) to API errors.
func keyError(err error) error {
	var fe *tenancy.FieldError
	switch {
	case errors.As(err, &fe):
		return errInvalidField(fe.Field, "%s", fe.Message)
	case errors.Is(err, tenancy.ErrKeyNotFound):
		return errNotFound("api key")
	case errors.Is(err, tenancy.ErrLastAdminKey):
		return &Error{Status: http.StatusConflict, Code: "last_admin_key",
			Message: "this is the organization's last active admin key: without it nobody can manage keys or connections " +
				"through the API; create another admin key first, or repeat with ?force=true"}
	}
	return err
}

// findingFieldError maps a finding's (or a finding-sync configuration's) decoding and validation
// errors to the invalid_field of their field.
func findingFieldError(err error) error {
	var fe *findings.FieldError
	if errors.As(err, &fe) {
		return errInvalidField(fe.Field, "%s", fe.Message)
	}
	return errBadRequest("invalid_finding", "", err.Error())
}

// Constructors for the error codes the API uses itself, while reading a request.
func errBadRequest(code, field, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Field: field, Message: msg}
}

func errInvalidField(field, format string, args ...any) *Error {
	return fromFailure(apperr.Invalid(field, format, args...))
}

func errUnauthorized() *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "missing or invalid API key"}
}

// errNotFound is also the answer for another org's resources: existence is never leaked.
func errNotFound(what string) *Error {
	return fromFailure(apperr.NotFound(what))
}

func errTooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
		Message: fmt.Sprintf("request body exceeds %d bytes", limit)}
}

// handleError renders every error as the JSON body above: the API's own errors as they are,
// use-case failures (apperr) through fromFailure. Unexpected errors are logged with the request
// id and answered with a generic 500, so internal details (SQL, hostnames) never leak.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var apiErr *Error
	var failure *apperr.Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &apiErr):
	case errors.As(err, &failure):
		apiErr = fromFailure(failure)
	case errors.As(err, &he):
		apiErr = fromEchoError(he, s.maxBody)
	default:
		s.log.ErrorContext(c.Request().Context(), "request failed",
			"method", c.Request().Method, "path", c.Path(), "request_id", requestID(c), "err", err)
		apiErr = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	var werr error
	if c.Request().Method == http.MethodHead {
		werr = c.NoContent(apiErr.Status)
	} else {
		werr = c.JSON(apiErr.Status, errorBody{Error: apiErr})
	}
	if werr != nil {
		s.log.Warn("write error response", "err", werr)
	}
}

func fromEchoError(he *echo.HTTPError, maxBody int64) *Error {
	switch he.Code {
	case http.StatusNotFound:
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such route"}
	case http.StatusMethodNotAllowed:
		return &Error{Status: he.Code, Code: "method_not_allowed", Message: "method not allowed on this route"}
	case http.StatusRequestEntityTooLarge:
		return errTooLarge(maxBody)
	case http.StatusUnsupportedMediaType:
		return &Error{Status: he.Code, Code: "unsupported_media_type", Message: "request body must be application/json"}
	case http.StatusUnauthorized:
		return errUnauthorized()
	}
	msg := http.StatusText(he.Code)
	if m, ok := he.Message.(string); ok && he.Code < 500 {
		msg = m
	}
	code := "error"
	if he.Code >= 500 {
		code = "internal"
	}
	return &Error{Status: he.Code, Code: code, Message: msg}
}
