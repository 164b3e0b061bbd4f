// Package contract checks HTTP exchanges with the API against its OpenAPI document
// (api/openapi.yaml), so that every test that talks to the API is also a contract test.
//
// A response must be declared for its operation (status code), carry a declared media type, match
// its schema (JSON Schema 2020-12, formats asserted) and carry the headers the document requires.
// A request the server accepted (2xx) must itself match the document: what the server takes, the
// document must describe. A request that matches no documented path and method may only be
// answered with the router's own error (404 not_found, 405 method_not_allowed, and before those
// 401 under /v1 or 413 for an oversized body), in the documented error envelope.
//
// Validation is done by pb33f/libopenapi-validator, which implements OpenAPI 3.1 with a JSON
// Schema 2020-12 validator.
package contract

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/jiraconnect/jiraconnect/api"
)

// Validator checks exchanges against one OpenAPI document. It is safe for concurrent use.
type Validator struct {
	v           validator.Validator
	model       *v3.Document
	errorSchema *base.Schema
	schemas     schema_validation.SchemaValidator
}

// New builds a Validator for an OpenAPI 3.1 document (YAML or JSON).
func New(spec []byte) (*Validator, error) {
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		return nil, fmt.Errorf("parse OpenAPI document: %w", err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("build OpenAPI model: %w", err)
	}
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		return nil, fmt.Errorf("build validator: %w", errors.Join(errs...))
	}
	proxy := model.Model.Components.Schemas.GetOrZero("Error")
	if proxy == nil {
		return nil, errors.New("the document has no components.schemas.Error")
	}
	return &Validator{v: v, model: &model.Model, errorSchema: proxy.Schema(),
		schemas: schema_validation.NewSchemaValidator(config.WithFormatAssertions())}, nil
}

// Document validates the document itself against the OpenAPI specification's schema.
func (v *Validator) Document() error {
	if ok, errs := v.v.ValidateDocument(); !ok {
		var b strings.Builder
		b.WriteString("api/openapi.yaml is not a valid OpenAPI document:")
		for _, e := range errs {
			writeValidationError(&b, e)
		}
		return errors.New(b.String())
	}
	return nil
}

// API is the Validator of the API's own document, built once per process (the document is
// part of the binary and never changes).
var API = sync.OnceValues(func() (*Validator, error) { return New(api.OpenAPIYAML()) })

// Exchange is one request and the response it got.
type Exchange struct {
	Request     *http.Request
	RequestBody []byte
	Status      int
	Header      http.Header
	Body        []byte
}

// Check validates ex and returns an error describing every violation: the operation, the status,
// and for each schema failure the JSON path of the offending value.
func (v *Validator) Check(ex Exchange) error {
	req := ex.Request.Clone(ex.Request.Context())
	resp := &http.Response{StatusCode: ex.Status, Header: ex.Header, Request: req,
		Body: io.NopCloser(bytes.NewReader(ex.Body)), ContentLength: int64(len(ex.Body))}
	_, errs := v.v.ValidateHttpResponse(req, resp)
	if slices.ContainsFunc(errs, func(e *verrors.ValidationError) bool {
		return e.IsPathMissingError() || e.IsOperationMissingError()
	}) {
		return v.checkUnrouted(ex)
	}
	if len(errs) > 0 {
		return v.failure(ex, "response", errs)
	}
	if ex.Status < 200 || ex.Status > 299 {
		return nil
	}
	req = ex.Request.Clone(ex.Request.Context())
	req.Body = io.NopCloser(bytes.NewReader(ex.RequestBody))
	req.ContentLength = int64(len(ex.RequestBody))
	if _, errs := v.v.ValidateHttpRequestSync(req); len(errs) > 0 {
		return v.failure(ex, "request (accepted with "+fmt.Sprint(ex.Status)+", so the document must describe it)", errs)
	}
	return nil
}

// checkUnrouted accepts, for a request that matches no documented operation, only the router's
// answers in the documented error envelope.
func (v *Validator) checkUnrouted(ex Exchange) error {
	allowed := map[int]string{http.StatusNotFound: "not_found", http.StatusMethodNotAllowed: "method_not_allowed",
		http.StatusRequestEntityTooLarge: "body_too_large"}
	if strings.HasPrefix(ex.Request.URL.Path, "/v1/") {
		allowed[http.StatusUnauthorized] = "unauthorized"
	}
	code, ok := allowed[ex.Status]
	if !ok {
		return fmt.Errorf("contract: %s %s matches no operation of api/openapi.yaml, yet it was answered %d "+
			"(a route the document lacks?)\n  body: %s", ex.Request.Method, ex.Request.URL.Path, ex.Status, excerpt(ex.Body))
	}
	if ok, errs := v.schemas.ValidateSchemaBytes(v.errorSchema, ex.Body); !ok {
		var b strings.Builder
		fmt.Fprintf(&b, "contract: %s %s (no operation) answered %d with a body that is not the Error envelope:",
			ex.Request.Method, ex.Request.URL.Path, ex.Status)
		for _, e := range errs {
			writeValidationError(&b, e)
		}
		fmt.Fprintf(&b, "\n  body: %s", excerpt(ex.Body))
		return errors.New(b.String())
	}
	if !bytes.Contains(ex.Body, []byte(`"code":"`+code+`"`)) {
		return fmt.Errorf("contract: %s %s (no operation) answered %d without the code %s\n  body: %s",
			ex.Request.Method, ex.Request.URL.Path, ex.Status, code, excerpt(ex.Body))
	}
	return nil
}

func (v *Validator) failure(ex Exchange, what string, errs []*verrors.ValidationError) error {
	var b strings.Builder
	fmt.Fprintf(&b, "contract: %s %s (%s) answered %d; the %s does not match api/openapi.yaml:",
		ex.Request.Method, ex.Request.URL.Path, v.operationOf(ex.Request, errs), ex.Status, what)
	for _, e := range errs {
		writeValidationError(&b, e)
	}
	if what == "response" {
		fmt.Fprintf(&b, "\n  body: %s", excerpt(ex.Body))
	} else {
		fmt.Fprintf(&b, "\n  request body: %s", excerpt(ex.RequestBody))
	}
	return errors.New(b.String())
}

// operationOf names the documented operation of a request, as "operationId, path template".
func (v *Validator) operationOf(req *http.Request, errs []*verrors.ValidationError) string {
	for _, e := range errs {
		if e.SpecPath == "" {
			continue
		}
		if item := v.model.Paths.PathItems.GetOrZero(e.SpecPath); item != nil {
			if op := item.GetOperations().GetOrZero(strings.ToLower(req.Method)); op != nil && op.OperationId != "" {
				return "operation " + op.OperationId + ", " + e.SpecPath
			}
		}
		return e.SpecPath
	}
	return "unknown operation"
}

func writeValidationError(b *strings.Builder, e *verrors.ValidationError) {
	fmt.Fprintf(b, "\n  - %s", e.Message)
	if e.Reason != "" && e.Reason != e.Message {
		fmt.Fprintf(b, ": %s", e.Reason)
	}
	for _, f := range e.SchemaValidationErrors {
		path := f.FieldPath
		if path == "" {
			path = "$"
		}
		fmt.Fprintf(b, "\n      at %s: %s", path, f.Reason)
		if f.KeywordLocation != "" {
			fmt.Fprintf(b, " (schema %s)", f.KeywordLocation)
		}
	}
}

func excerpt(b []byte) string {
	const max = 600
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// Handler wraps h (the server side): every exchange it serves is checked before the response is
// sent, and each violation is passed to report. The response itself is sent unchanged.
func (v *Validator) Handler(h http.Handler, report func(error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			report(fmt.Errorf("contract: read the request body of %s %s: %w", r.Method, r.URL.Path, err))
		}
		_ = r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if err := v.Check(Exchange{Request: r, RequestBody: body, Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}); err != nil {
			report(err)
		}
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// Transport wraps base (the client side, http.DefaultTransport when nil): every exchange is
// checked once its response body has been read, and each violation is passed to report. The
// caller gets the response unchanged.
func (v *Validator) Transport(base http.RoundTripper, report func(error)) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		var body []byte
		if req.Body != nil {
			var err error
			if body, err = io.ReadAll(req.Body); err != nil {
				return nil, fmt.Errorf("contract: read the request body: %w", err)
			}
			_ = req.Body.Close()
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		resp, err := base.RoundTrip(req)
		if err != nil {
			return resp, err
		}
		respBody, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("contract: read the response body: %w", err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(respBody))
		if err := v.Check(Exchange{Request: req, RequestBody: body, Status: resp.StatusCode, Header: resp.Header, Body: respBody}); err != nil {
			report(err)
		}
		return resp, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
