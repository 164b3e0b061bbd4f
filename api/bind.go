package api

import (
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/strictjson"
)

// decodeJSON reads the request body strictly into dst (see strictjson: one JSON object of at most
// the configured size, no unknown or duplicate fields, values of exactly the declared kind, no NUL,
// invalid UTF-8 or stray control characters). Errors name the offending field or position, so
// clients can fix their request without guessing, and nothing has been written when they occur.
func (s *Server) decodeJSON(c echo.Context, dst any) error {
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	return decodeStrict(body, dst)
}

// readBody reads a JSON request body of at most the configured size, for decoders that interpret
// it themselves (through strictjson as well).
func (s *Server) readBody(c echo.Context) ([]byte, error) {
	req := c.Request()
	if ct := req.Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != echo.MIMEApplicationJSON {
			return nil, &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
				Message: "request body must be application/json"}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, s.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge(s.maxBody)
		}
		return nil, errBadRequest("unreadable_body", "", "could not read request body")
	}
	return body, nil
}

// decodeStrict decodes body through strictjson, the one strict decoding path of every endpoint,
// and turns its errors into API errors naming the field.
func decodeStrict(body []byte, dst any) error {
	if err := strictjson.Decode(body, dst); err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) {
			return &Error{Status: http.StatusBadRequest, Code: se.Code, Field: se.Field, Message: se.Message}
		}
		return errBadRequest("invalid_json", "", "malformed JSON")
	}
	return nil
}
