package api

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
	"gopkg.in/yaml.v3"
)

// openAPIYAML is the API's contract, api/openapi.yaml: every route, parameter, body, response and
// error code. A test compares it with the route table both ways, and the API and end-to-end tests
// validate every response against it (api/contract).
//
//go:embed openapi.yaml
var openAPIYAML []byte

// docsFiles are the documentation page and the Swagger UI build it loads, vendored (see
// api/docs/README.md) so that the page needs nothing from elsewhere at run time.
//
//go:embed docs/index.html docs/docs.js docs/docs.css docs/swagger-ui-bundle.js docs/swagger-ui.css
var docsFiles embed.FS

// OpenAPIYAML returns the API's OpenAPI 3.1 document as written (api/openapi.yaml).
func OpenAPIYAML() []byte { return bytes.Clone(openAPIYAML) }

// docsCSP confines the documentation page to this server: its own scripts and styles (no inline
// ones), the document and the API for "try it out" (connect-src), the data: images of Swagger
// UI's style sheet. Nothing on the page comes from Jira, but nothing needs more either.
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// docsAssets maps the file names served under /docs/assets/ to their embedded path and media type
// (the OpenAPI document lists the same names).
var docsAssets = map[string]struct{ path, mediaType string }{
	"swagger-ui-bundle.js": {"docs/swagger-ui-bundle.js", "text/javascript; charset=utf-8"},
	"swagger-ui.css":       {"docs/swagger-ui.css", "text/css; charset=utf-8"},
	"docs.js":              {"docs/docs.js", "text/javascript; charset=utf-8"},
	"docs.css":             {"docs/docs.css", "text/css; charset=utf-8"},
}

// routeDocs registers the OpenAPI document (/openapi.yaml as written, /openapi.json converted
// here once) and its rendering (/docs) on the public listener, without authentication: they
// describe the public API and hold nothing of any tenant. The embedded document is part of the
// build, so one that does not convert is a programming error, caught by every test that builds a
// Server.
func (s *Server) routeDocs(e *echo.Echo) {
	specJSON, err := yamlToJSON(openAPIYAML)
	if err != nil {
		panic(fmt.Sprintf("api/openapi.yaml does not convert to JSON: %v", err))
	}
	e.GET("/openapi.json", func(c echo.Context) error {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, specJSON)
	})
	e.GET("/openapi.yaml", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", openAPIYAML)
	})
	e.GET("/docs", func(c echo.Context) error {
		page, err := docsFiles.ReadFile("docs/index.html")
		if err != nil {
			return err
		}
		h := c.Response().Header()
		h.Set("Content-Security-Policy", docsCSP)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set(echo.HeaderXContentTypeOptions, "nosniff")
		return c.Blob(http.StatusOK, echo.MIMETextHTMLCharsetUTF8, page)
	})
	e.GET("/docs/assets/:file", func(c echo.Context) error {
		asset, ok := docsAssets[c.Param("file")]
		if !ok {
			return errNotFound("file")
		}
		body, err := docsFiles.ReadFile(asset.path)
		if err != nil {
			return err
		}
		h := c.Response().Header()
		h.Set(echo.HeaderXContentTypeOptions, "nosniff")
		h.Set("Cache-Control", "public, max-age=3600")
		return c.Blob(http.StatusOK, asset.mediaType, body)
	})
}

// yamlToJSON converts a YAML document to JSON, keeping the order of mapping keys (a generic
// decode into maps would sort them, and renderers show paths and members in document order).
func yamlToJSON(src []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, &doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeJSON(buf *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return fmt.Errorf("line %d: a document must hold one value", n.Line)
		}
		return writeJSON(buf, n.Content[0])
	case yaml.AliasNode:
		// Aliases and merge keys would need expanding (and guarding against cycles); the
		// document uses $ref instead.
		return fmt.Errorf("line %d: YAML aliases are not supported", n.Line)
	case yaml.MappingNode:
		buf.WriteByte('{')
		seen := make(map[string]bool, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				buf.WriteByte(',')
			}
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: mapping keys must be scalars", k.Line)
			}
			if k.Tag == "!!merge" {
				return fmt.Errorf("line %d: YAML merge keys are not supported", k.Line)
			}
			if seen[k.Value] {
				return fmt.Errorf("line %d: duplicate key %q", k.Line, k.Value)
			}
			seen[k.Value] = true
			key, err := json.Marshal(k.Value)
			if err != nil {
				return err
			}
			buf.Write(key)
			buf.WriteByte(':')
			if err := writeJSON(buf, n.Content[i+1]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, c); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		buf.Write(b)
		return nil
	}
	return fmt.Errorf("line %d: unsupported YAML node kind %d", n.Line, n.Kind)
}
