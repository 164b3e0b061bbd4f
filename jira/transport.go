package jira

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/jiraconnect/jiraconnect/egress"
)

// transportFailure classifies a failed HTTP exchange (no response, or a body cut short) into a
// Kind and a message safe to show a tenant. The error's own text is not used: it names resolved
// addresses, ports, the resolver's address and certificate names, which would let a tenant map
// the server's network. Callers log the original error.
func transportFailure(err error) (Kind, string) {
	var denied *egress.DeniedError
	if errors.As(err, &denied) {
		return KindEgressDenied, denied.Public()
	}
	if msg, ok := tlsFailure(err); ok {
		return KindTLS, "TLS with the site failed: " + msg
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		switch {
		case dnsErr.IsNotFound:
			return KindTransport, "the site's host name does not resolve"
		case dnsErr.IsTimeout:
			return KindTransport, "looking up the site's host name timed out"
		}
		return KindTransport, "looking up the site's host name failed"
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return KindTransport, "the site did not answer in time"
	}
	return KindTransport, "could not connect to the site, or the connection was cut"
}

// tlsFailure recognises TLS handshake failures and names the reason in a few words, without the
// certificate's names or issuers.
func tlsFailure(err error) (string, bool) {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	var alert tls.AlertError
	switch {
	case errors.As(err, &unknown):
		return "the certificate is not issued by a trusted authority", true
	case errors.As(err, &hostname):
		return "the certificate is not valid for the site's host name", true
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return "the certificate has expired or is not valid yet", true
		}
		return "the certificate is not valid", true
	case errors.As(err, &verify):
		return "the certificate could not be verified", true
	case errors.As(err, &record), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http reports a RecordHeaderError that starts like an HTTP response in its own words.
		return "the site did not answer with TLS (is it a plain http:// site?)", true
	case errors.As(err, &alert):
		return "the site refused the TLS handshake", true
	case strings.Contains(err.Error(), "tls: "):
		return "the TLS handshake failed", true
	}
	return "", false
}

// decodeSummary describes why a response body could not be decoded without quoting it: a success
// answer from something that is not Jira must not have its content relayed to the tenant.
func decodeSummary(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at offset %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fmt.Sprintf("JSON %s where the API documents another type", te.Value)
		}
		return fmt.Sprintf("field %q has JSON type %s", te.Field, te.Value)
	}
	return "the content is not what the API documents"
}
