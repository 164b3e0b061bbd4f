package jira

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Defaults applied by New when the Config leaves a field zero.
const (
	// DefaultMaxResponseBytes bounds every response body. Jira pages are well below this; a
	// larger body is a misbehaving server or proxy, and reading it unbounded would let one tenant's
	// site exhaust a worker's memory.
	DefaultMaxResponseBytes int64 = 16 << 20
	// DefaultRequestTimeout applies to a call whose context has no deadline.
	DefaultRequestTimeout = 30 * time.Second
	defaultUserAgent      = "jiraconnect"
)

// Config configures a Client. Flavor, BaseURL and Auth are required.
type Config struct {
	Flavor Flavor
	// BaseURL is the API root below which /rest/api/{2,3} lives:
	//   - Cloud with an API token: the site, https://your-domain.atlassian.net
	//   - Cloud with OAuth 3LO (or a scoped API token): https://api.atlassian.com/ex/jira/{cloudid}
	//     (see OAuthApp.GatewayURL)
	//   - Data Center: the base URL including any context path, https://jira.example.com/jira
	BaseURL string
	// SiteURL is the human-facing site used for browse links (https://your-domain.atlassian.net).
	// Defaults to BaseURL, which is right for API tokens and Data Center but not for the gateway.
	SiteURL string
	Auth    Auth
	// HTTPClient defaults to a client that does not follow redirects: Jira's REST API does not
	// redirect, so a redirect means a wrong base URL (e.g. an SSO login page) and following it
	// would replay credentials elsewhere. The default reaches any address; the services pass the
	// egress policy's client (egress.Policy.HTTPClient), which also refuses private destinations.
	HTTPClient *http.Client
	// Stats, when set, counts every call per operation.
	Stats *CallStats
	// MaxResponseBytes bounds response bodies (default DefaultMaxResponseBytes).
	MaxResponseBytes int64
	// RequestTimeout applies when the context has no deadline (default DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Logger receives one debug record per call (operation, method, path, status, duration).
	// Nothing it logs contains a credential. Defaults to a discarding logger.
	Logger    *slog.Logger
	UserAgent string
}

// Client calls one Jira site's REST API. It is safe for concurrent use. It never sleeps or
// retries on 429/5xx — Temporal activities own retries, using the typed errors' RetryAfter — except
// for the single refresh-and-retry of an OAuth request that got a 401.
type Client struct {
	flavor   Flavor
	base     *url.URL
	prefix   string // /rest/api/3 or /rest/api/2
	site     string
	auth     Auth
	hc       *http.Client
	stats    *CallStats
	maxBytes int64
	timeout  time.Duration
	log      *slog.Logger
	ua       string
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	c := &Client{
		flavor:   cfg.Flavor,
		auth:     cfg.Auth,
		hc:       cfg.HTTPClient,
		stats:    cfg.Stats,
		maxBytes: cfg.MaxResponseBytes,
		timeout:  cfg.RequestTimeout,
		log:      cfg.Logger,
		ua:       cfg.UserAgent,
	}
	switch cfg.Flavor {
	case Cloud:
		c.prefix = "/rest/api/3"
	case DataCenter:
		c.prefix = "/rest/api/2"
	default:
		return nil, configError("new client", fmt.Sprintf("unknown flavor %q", cfg.Flavor))
	}
	if cfg.Auth == nil {
		return nil, configError("new client", "no auth configured")
	}
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, configError("new client", "base URL: "+err.Error())
	}
	if _, ok := cfg.Auth.(oauthAuth); ok {
		if cfg.Flavor != Cloud {
			return nil, configError("new client", "OAuth 2.0 (3LO) is a Jira Cloud feature")
		}
		// 3LO tokens are refused by *.atlassian.net; they only work through the gateway.
		if strings.HasSuffix(strings.ToLower(base.Hostname()), ".atlassian.net") {
			return nil, configError("new client", "OAuth requests must go to the api.atlassian.com gateway (OAuthApp.GatewayURL), not the site URL")
		}
	}
	c.base = base
	c.site = strings.TrimRight(cfg.SiteURL, "/")
	if c.site == "" {
		c.site = strings.TrimRight(base.String(), "/")
	} else if _, err := parseBaseURL(c.site); err != nil {
		return nil, configError("new client", "site URL: "+err.Error())
	}
	if c.hc == nil {
		c.hc = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultMaxResponseBytes
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.ua == "" {
		c.ua = defaultUserAgent
	}
	return c, nil
}

// Flavor returns the configured flavor.
func (c *Client) Flavor() Flavor { return c.flavor }

// BrowseURL returns the human link to an issue.
func (c *Client) BrowseURL(key string) string {
	return c.site + "/browse/" + url.PathEscape(key)
}

func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, errors.New("scheme must be http or https")
	}
	if u.Host == "" {
		return nil, errors.New("no host")
	}
	// Credentials in a URL end up in logs and error strings; they belong in Auth.
	if u.User != nil {
		return nil, errors.New("must not contain user info")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("must not contain a query or fragment")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

func configError(op, detail string) *Error {
	return &Error{Kind: KindConfig, Op: op, Detail: detail}
}

// request describes one API call. path is relative to the API prefix and already escaped.
type request struct {
	op     string
	method string
	path   string
	query  url.Values
	body   any // marshalled to JSON; the bytes make every request replayable for the 401 retry
	out    any // JSON decode target; nil discards the body
	// decode, when set, reads the 2xx body instead of decoding it into out (for answers too
	// large to decode in full, where only their shape or size matters).
	decode func(body []byte) error
	// classify adjusts the error kind for this operation (e.g. 403 on create).
	classify func(e *Error)
}

// apiPath joins escaped path segments: apiPath("issue", key, "transitions").
func apiPath(segments ...string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// do performs r, decoding a 2xx JSON body into r.out. A 401 on an OAuth connection triggers one
// token refresh and one retry: the body is held as bytes, so the retry is always a faithful replay,
// and Jira rejects an unauthenticated request before acting on it, so the retry cannot duplicate
// an effect.
func (c *Client) do(ctx context.Context, r *request) error {
	var body []byte
	if r.body != nil {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		// User text such as "a & b" goes to Jira as is, not as \u0026.
		enc.SetEscapeHTML(false)
		if err := enc.Encode(r.body); err != nil {
			return &Error{Kind: KindConfig, Op: r.op, Method: r.method, Path: c.fullPath(r.path), Detail: "encode request body", Err: err}
		}
		body = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	res, err := c.send(ctx, r, body, 1)
	if err != nil {
		return err
	}
	if res.status == http.StatusUnauthorized {
		retry, rerr := c.auth.refreshAfter401(ctx, res.used)
		if rerr != nil {
			return c.wrapAuthError(r, rerr)
		}
		if retry {
			if res, err = c.send(ctx, r, body, 2); err != nil {
				return err
			}
			if res.status == http.StatusUnauthorized {
				// A token minted seconds ago was refused: the grant no longer covers this site.
				return c.statusError(ctx, r, res, KindReauthRequired)
			}
		} else {
			kind := KindReauthRequired
			if _, ok := c.auth.(oauthAuth); ok {
				kind = KindUnauthorized
			}
			return c.statusError(ctx, r, res, kind)
		}
	}
	if res.status < 200 || res.status > 299 {
		return c.statusError(ctx, r, res, "")
	}
	if r.out == nil && r.decode == nil {
		return nil
	}
	if len(bytes.TrimSpace(res.body)) == 0 {
		return c.malformed(ctx, r, res, "empty response body", nil)
	}
	if r.decode != nil {
		if err := r.decode(res.body); err != nil {
			return c.malformed(ctx, r, res, "decode response", err)
		}
		return nil
	}
	if err := json.Unmarshal(res.body, r.out); err != nil {
		return c.malformed(ctx, r, res, "decode response", err)
	}
	return nil
}

type response struct {
	status int
	header http.Header
	body   []byte
	used   Secret
	path   string
}

func (c *Client) fullPath(rel string) string {
	return c.base.EscapedPath() + c.prefix + rel
}

// send performs one HTTP attempt. Transport, size and context failures come back as *Error;
// any HTTP status comes back as a response.
func (c *Client) send(ctx context.Context, r *request, body []byte, attempt int) (*response, error) {
	path := c.fullPath(r.path)
	u := *c.base
	u.Path, u.RawPath = "", ""
	target := u.String() + path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	var rdr io.Reader
	if body != nil {
		rdr = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, rdr)
	if err != nil {
		return nil, &Error{Kind: KindConfig, Op: r.op, Method: r.method, Path: path, Detail: "build request", Err: errors.New(c.redact(err.Error(), Secret{}))}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	used, err := c.auth.authorize(ctx, req)
	if err != nil {
		return nil, c.wrapAuthError(r, err)
	}
	c.stats.Record(r.op)
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		e := c.transportError(ctx, r, path, used, err)
		c.logFailure(ctx, r, path, attempt, time.Since(start), e, used)
		return nil, e
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	c.log.LogAttrs(ctx, slog.LevelDebug, "jira call", slog.String("op", r.op), slog.String("method", r.method),
		slog.String("path", path), slog.Int("status", resp.StatusCode), slog.Int("attempt", attempt),
		slog.Int("bytes", len(data)), slog.Duration("elapsed", time.Since(start)))
	if err != nil {
		e := c.transportError(ctx, r, path, used, err)
		e.Status = resp.StatusCode
		e.Detail = "read response body"
		c.logFailure(ctx, r, path, attempt, time.Since(start), e, used)
		return nil, e
	}
	if int64(len(data)) > c.maxBytes {
		return nil, &Error{Kind: KindResponseTooLarge, Op: r.op, Method: r.method, Path: path, Status: resp.StatusCode,
			Detail: fmt.Sprintf("response body exceeds %d bytes", c.maxBytes)}
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data, used: used, path: path}, nil
}

// transportError classifies a failed exchange (see transportFailure). Err keeps the cause for
// errors.Is/As, but its text is the category's: the raw text goes to the log (logFailure).
func (c *Client) transportError(ctx context.Context, r *request, path string, used Secret, err error) *Error {
	// *url.Error repeats the full URL; we report the path separately, so keep only the cause, and
	// keep context errors matchable with errors.Is.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if ctxErr := ctx.Err(); ctxErr != nil && (errors.Is(err, ctxErr) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return &Error{Kind: KindTransport, Op: r.op, Method: r.method, Path: path, Err: ctxErr}
	}
	kind, msg := transportFailure(err)
	return &Error{Kind: kind, Op: r.op, Method: r.method, Path: path, Err: redactedError{msg: msg, cause: err}}
}

// logFailure records a failed exchange with its full cause (the resolver's, dialer's or TLS
// stack's own text, credentials removed): the detail that the error deliberately leaves out.
// A refusal by the egress policy is a warning: it is either a misconfigured site or a tenant
// probing the server's network.
func (c *Client) logFailure(ctx context.Context, r *request, path string, attempt int, elapsed time.Duration, e *Error, used Secret) {
	level, msg := slog.LevelInfo, "jira call failed"
	if e.Kind == KindEgressDenied {
		level, msg = slog.LevelWarn, "jira call refused by the egress policy"
	}
	cause := ""
	if e.Err != nil {
		if re, ok := e.Err.(redactedError); ok && re.cause != nil {
			cause = c.redact(re.cause.Error(), used)
		} else {
			cause = c.redact(e.Err.Error(), used)
		}
	}
	c.log.LogAttrs(ctx, level, msg, slog.String("op", r.op), slog.String("method", r.method), slog.String("host", c.base.Host),
		slog.String("path", path), slog.Int("status", e.Status), slog.String("kind", string(e.Kind)), slog.String("cause", cause),
		slog.Int("attempt", attempt), slog.Duration("elapsed", elapsed))
}

// redactedError carries a scrubbed message while keeping the cause for errors.Is/As.
type redactedError struct {
	msg   string
	cause error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.cause }

// wrapAuthError turns a failure to obtain a credential into an *Error for this operation,
// keeping the token endpoint's kind (re-auth required, config, rate limited …).
func (c *Client) wrapAuthError(r *request, err error) error {
	var je *Error
	if errors.As(err, &je) {
		// Status stays 0: the Jira request was never sent; the token endpoint's status is in Err.
		return &Error{Kind: je.Kind, Op: r.op, Method: r.method, Path: c.fullPath(r.path),
			RetryAfter: je.RetryAfter, RateLimitReason: je.RateLimitReason, Detail: "obtain credentials", Err: err}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Kind: KindTransport, Op: r.op, Method: r.method, Path: c.fullPath(r.path), Detail: "obtain credentials", Err: err}
	}
	// Anything else is a misconfigured Auth (empty token, nil source).
	return &Error{Kind: KindConfig, Op: r.op, Method: r.method, Path: c.fullPath(r.path), Detail: "obtain credentials",
		Err: redactedError{msg: c.redact(err.Error(), Secret{}), cause: err}}
}

// malformed reports a success answer whose body is not what the API documents. The message
// describes the problem without quoting the body (which may not be Jira's at all); the decoder's
// own text is logged.
func (c *Client) malformed(ctx context.Context, r *request, res *response, detail string, err error) *Error {
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelInfo, "jira answer not decodable", slog.String("op", r.op), slog.String("host", c.base.Host),
			slog.String("path", res.path), slog.Int("status", res.status), slog.String("cause", c.redact(err.Error(), res.used)))
		err = redactedError{msg: decodeSummary(err), cause: err}
	}
	return &Error{Kind: KindMalformedResponse, Op: r.op, Method: r.method, Path: res.path, Status: res.status, Detail: detail, Err: err}
}

// statusError classifies a non-2xx response. force, when set, overrides the status mapping.
// What the error leaves out for the tenant's sake (a non-Jira body's text, a redirect's target)
// is logged.
func (c *Client) statusError(ctx context.Context, r *request, res *response, force Kind) *Error {
	e := &Error{Op: r.op, Method: r.method, Path: res.path, Status: res.status}
	if excerpt := parseErrorBody(e, res.header, res.body); excerpt != "" {
		c.log.LogAttrs(ctx, slog.LevelInfo, "jira call answered with a non-Jira error body", slog.String("op", r.op),
			slog.String("host", c.base.Host), slog.String("path", res.path), slog.Int("status", res.status),
			slog.String("content_type", sanitizeText(res.header.Get("Content-Type"), 100)), slog.String("excerpt", c.redact(excerpt, res.used)))
	}
	if res.status >= 300 && res.status < 400 {
		c.log.LogAttrs(ctx, slog.LevelInfo, "jira call answered with a redirect", slog.String("op", r.op),
			slog.String("host", c.base.Host), slog.String("path", res.path), slog.Int("status", res.status),
			slog.String("location", c.redact(sanitizeText(res.header.Get("Location"), 300), res.used)))
	}
	for i, m := range e.Messages {
		e.Messages[i] = c.redact(m, res.used)
	}
	for k, v := range e.FieldErrors {
		e.FieldErrors[k] = c.redact(v, res.used)
	}
	e.RetryAfter = retryAfter(res.header, time.Now())
	e.RateLimitReason = firstHeader(res.header, "RateLimit-Reason", "X-RateLimit-Reason", "X-Beta-RateLimit-Reason")
	e.Kind = classifyStatus(e, res.header)
	if force != "" {
		e.Kind = force
	}
	if r.classify != nil {
		r.classify(e)
	}
	return e
}

func classifyStatus(e *Error, h http.Header) Kind {
	s := e.Status
	switch {
	case s >= 300 && s < 400:
		// The target is not named: it is whatever the site chose, possibly an internal host.
		e.Detail = "unexpected redirect; check the base URL"
		return KindConfig
	case s == http.StatusBadRequest:
		for _, id := range e.CustomFields() {
			if unknownFieldMessage(e.FieldErrors[id]) {
				return KindCustomFieldUnknown
			}
		}
		return KindBadRequest
	case s == http.StatusUnauthorized:
		return KindUnauthorized
	case s == http.StatusForbidden:
		return KindForbidden
	case s == http.StatusNotFound:
		for _, m := range e.Messages {
			if strings.Contains(strings.ToLower(m), "customfield_") {
				return KindCustomFieldUnknown
			}
		}
		return KindNotFound
	case s == http.StatusConflict:
		return KindConflict
	case s == http.StatusGone:
		return KindGone
	case s == http.StatusTooManyRequests:
		return KindRateLimited
	case s == http.StatusServiceUnavailable && e.RetryAfter > 0:
		return KindRateLimited
	case s >= 500:
		return KindServer
	default:
		return KindBadRequest
	}
}

// unknownFieldMessage reports whether a per-field error says the field itself is unusable
// (Jira: "Field 'customfield_10099' cannot be set. It is not on the appropriate screen, or
// unknown."), as opposed to a bad value for a known field ("Option value 'X' is not valid"), which
// stays KindBadRequest with the field named in Error.CustomFields.
func unknownFieldMessage(msg string) bool {
	m := strings.ToLower(msg)
	for _, s := range []string{"cannot be set", "unknown", "does not exist", "not on the appropriate screen", "not found"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// parseErrorBody fills Messages/FieldErrors from Jira's ErrorCollection
// ({"errorMessages":[…],"errors":{…}}), the gateway's {"code":…,"message":…} or OAuth's
// {"error":…,"error_description":…}. Any other body — plain text (Cloud answers some 401s so),
// HTML, other JSON — may come from something that is not Jira at all (a tenant's site URL can
// point anywhere the egress policy allows), so its text is never kept: Messages only describes
// it, and the sanitized excerpt is returned for the caller to log.
func parseErrorBody(e *Error, h http.Header, body []byte) (excerpt string) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return ""
	}
	if trimmed[0] == '{' {
		var w struct {
			ErrorMessages []string                   `json:"errorMessages"`
			Errors        map[string]json.RawMessage `json:"errors"`
			Code          json.Number                `json:"code"`
			Message       string                     `json:"message"`
			Error         string                     `json:"error"`
			Description   string                     `json:"error_description"`
		}
		if json.Unmarshal(trimmed, &w) == nil && atlassianErrorShape(trimmed, w.Code, w.Message, w.Error) {
			for _, m := range w.ErrorMessages {
				if m = sanitizeText(m, 500); m != "" {
					e.Messages = append(e.Messages, m)
				}
			}
			for k, raw := range w.Errors {
				var s string
				if json.Unmarshal(raw, &s) != nil {
					s = string(raw)
				}
				if e.FieldErrors == nil {
					e.FieldErrors = make(map[string]string)
				}
				e.FieldErrors[sanitizeText(k, 100)] = sanitizeText(s, 500)
			}
			if m := sanitizeText(w.Message, 500); m != "" {
				e.Messages = append(e.Messages, m)
			}
			if w.Error != "" {
				m := sanitizeText(w.Error, 100)
				if d := sanitizeText(w.Description, 400); d != "" {
					m += ": " + d
				}
				e.Messages = append(e.Messages, m)
			}
			return ""
		}
	}
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	kind := "non-JSON"
	if trimmed[0] == '{' || trimmed[0] == '[' {
		kind = "non-Jira"
	}
	e.Messages = append(e.Messages, fmt.Sprintf("%s error body (%s, %d bytes)", kind, orUnknown(mt), len(body)))
	return sanitizeText(string(trimmed), 200)
}

// atlassianErrorShape reports whether a JSON error body is one of the shapes Jira and Atlassian's
// gateway and token endpoint answer with: an ErrorCollection (errorMessages and/or errors), the
// gateway's {"code": <status>, "message": …}, or OAuth's {"error": …}. Other JSON is some other
// service's, and is not relayed.
func atlassianErrorShape(raw []byte, code json.Number, message, oauthError string) bool {
	var keys map[string]json.RawMessage
	if json.Unmarshal(raw, &keys) != nil {
		return false
	}
	if _, ok := keys["errorMessages"]; ok {
		return true
	}
	if _, ok := keys["errors"]; ok {
		return true
	}
	if oauthError != "" {
		return true
	}
	if _, err := code.Int64(); err == nil && message != "" {
		return true
	}
	return false
}

func orUnknown(s string) string {
	if s == "" {
		return "no content type"
	}
	return s
}

// sanitizeText makes server-provided text safe to embed in an error line: valid UTF-8, no control
// characters (newlines would let a server forge log lines), whitespace collapsed, bounded length.
func sanitizeText(s string, max int) string {
	var b strings.Builder
	space := false
	n := 0
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if n >= max {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// redact removes every credential the client knows about from s. Error messages are built from
// server-controlled text; a misbehaving proxy that echoes request headers must not be able to put
// a token into our logs.
func (c *Client) redact(s string, used Secret) string {
	vals := append(c.auth.secretValues(), used.Reveal())
	return redactValues(s, vals)
}

func redactValues(s string, vals []string) string {
	for _, v := range vals {
		if len(v) >= 4 && strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, redacted)
		}
	}
	return s
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(h.Get(n)); v != "" {
			return sanitizeText(v, 100)
		}
	}
	return ""
}

// retryAfter reads Retry-After (seconds or HTTP-date), falling back to Beta-Retry-After, which
// Jira sends while points-based limits are informational. Negative or unparsable values are 0.
func retryAfter(h http.Header, now time.Time) time.Duration {
	for _, name := range []string{"Retry-After", "Beta-Retry-After"} {
		v := strings.TrimSpace(h.Get(name))
		if v == "" {
			continue
		}
		if secs, err := strconv.ParseFloat(v, 64); err == nil {
			if secs <= 0 || secs != secs {
				return 0
			}
			const maxDelay = 24 * time.Hour
			if secs > maxDelay.Seconds() {
				return maxDelay
			}
			return time.Duration(secs * float64(time.Second))
		}
		if t, err := http.ParseTime(v); err == nil {
			if d := t.Sub(now); d > 0 {
				return d.Round(time.Second)
			}
			return 0
		}
	}
	return 0
}

// validUTF8Printable reports whether s is non-empty valid UTF-8 without control characters.
func validUTF8Printable(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
