package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/connections"
)

// decodeJSON reads the request body strictly into dst: it must be one JSON object of at most the
// configured size, with no unknown fields and no trailing data. Errors name the offending field
// or position, so clients can fix their request without guessing.
func (s *Server) decodeJSON(c echo.Context, dst any) error {
	req := c.Request()
	if ct := req.Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != echo.MIMEApplicationJSON {
			return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
				Message: "request body must be application/json"}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, s.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge(s.maxBody)
		}
		return errBadRequest("unreadable_body", "", "could not read request body")
	}
	return decodeStrict(body, dst)
}

func decodeStrict(body []byte, dst any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return errBadRequest("invalid_json", "", "request body is empty; expected a JSON object")
	}
	if trimmed[0] != '{' {
		return errBadRequest("invalid_json", "", "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return errBadRequest("invalid_json", "", "request body has data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errBadRequest("invalid_json", "", "request body has data after the JSON object")
	}
	return nil
}

func jsonError(err error) *Error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var dur *connections.DurationError
	switch {
	case errors.As(err, &syn):
		return errBadRequest("invalid_json", "", "malformed JSON at byte "+itoa(syn.Offset)+": "+syn.Error())
	case errors.As(err, &typ):
		field := typ.Field
		return errBadRequest("invalid_field", field, field+": must be "+jsonKind(typ.Type.Kind().String()))
	case errors.As(err, &dur):
		return errBadRequest("invalid_field", "", dur.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errBadRequest("invalid_json", "", "malformed JSON: unexpected end of input")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name := strings.Trim(f, `"`)
		return errBadRequest("unknown_field", name, name+": unknown field")
	}
	return errBadRequest("invalid_json", "", "malformed JSON")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	}
	return "of another type"
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
