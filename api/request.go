package api

// Request parsing: every helper that reads a request — its JSON body (strictly), its path ids, its
// query parameters, its caller's address — lives here, so handlers only name what they read.

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/audit"
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

// decodeEmpty accepts the body of a request that takes no parameters: nothing (whitespace
// included) or an empty JSON object; any member is unknown_field naming it.
func (s *Server) decodeEmpty(c echo.Context) error {
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	if len(bytes.Trim(body, " \t\r\n")) == 0 {
		return nil
	}
	var none struct{}
	return decodeStrict(body, &none)
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

// pathID parses the id of a what ("connection") named in the path; an id that is not a uuid is
// a thing that does not exist (404).
func pathID(c echo.Context, what string) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return uuid.Nil, errNotFound(what)
	}
	return id, nil
}

// queryInt parses an optional integer query parameter within [min, max].
func queryInt(c echo.Context, name string, def, min, max int) (int, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < min || n > max {
		return 0, errInvalidField(name, "must be an integer between %d and %d", min, max)
	}
	return n, nil
}

// queryBool parses an optional boolean query parameter strictly: absent is false, otherwise it
// must be given once as exactly "true" or "false".
func queryBool(c echo.Context, name string) (bool, error) {
	values, ok := c.QueryParams()[name]
	if !ok {
		return false, nil
	}
	if len(values) == 1 {
		switch values[0] {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, errInvalidField(name, "must be given once, as true or false")
}

// queryTime parses an optional RFC 3339 timestamp query parameter.
func queryTime(c echo.Context, name string) (*time.Time, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return nil, errInvalidField(name, "must be an RFC 3339 timestamp such as 2026-01-02T15:04:05Z")
	}
	return &t, nil
}

// queryCursor parses the optional keyset cursor of listings ordered by (created_at, id) desc.
func queryCursor(c echo.Context) (*time.Time, *uuid.UUID, error) {
	cursor := c.QueryParam("cursor")
	if cursor == "" {
		return nil, nil, nil
	}
	ts, id, ok := strings.Cut(cursor, "_")
	t, terr := time.Parse(time.RFC3339Nano, ts)
	uid, uerr := uuid.Parse(id)
	if !ok || terr != nil || uerr != nil {
		return nil, nil, errInvalidField("cursor", "must be a next_cursor value from a previous page")
	}
	return &t, &uid, nil
}

// cursorOf is the next_cursor of a page whose last row is (createdAt, id).
func cursorOf(createdAt time.Time, id uuid.UUID) string {
	return createdAt.UTC().Format(time.RFC3339Nano) + "_" + id.String()
}

// caller is the audit identity and address of the request.
func (s *Server) caller(c echo.Context) audit.Caller {
	return audit.Caller{Actor: actor(c), SourceIP: s.clientAddr(c)}
}

// clientAddr is the caller's address for audit rows: the direct peer, or — when the peer is a
// trusted proxy — the right-most X-Forwarded-For hop that is not itself a trusted proxy. Every
// X-Forwarded-For header line counts, in order, as one list: a proxy that appends its own line
// (HAProxy's option forwardfor) must not let a forged first line speak for the client.
func (s *Server) clientAddr(c echo.Context) netip.Addr {
	return clientIP(c.Request(), s.deps.TrustedProxies)
}

func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := peer.Addr().Unmap()
	if !inAny(addr, trusted) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr // a malformed chain is not believed past this point
		}
		a = a.Unmap()
		if !inAny(a, trusted) {
			return a
		}
		addr = a
	}
	return addr
}

func inAny(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
