package pearl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// The kinds of failure of a request, for errors.Is. Every error a Client
// returns for a request the device did not complete is an *Error whose Kind
// is one of these, except when the caller's context ended: then the error
// wraps ctx.Err().
var (
	// ErrUnauthorized: the device refused the credentials (HTTP 401) or
	// the account may not use the API (HTTP 403); Error.StatusCode tells
	// which.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable: no usable answer: connection refused or reset, no
	// answer within the timeout, a TLS failure, or HTTP 5xx (a booting
	// device answers 503 with an HTML page).
	ErrUnavailable = errors.New("device unavailable")
	// ErrBadResponse: an answer that is not the JSON the API promises:
	// garbage, truncated, empty, an HTML page where JSON was expected, a
	// body over MaxBodySize, or a redirect.
	ErrBadResponse = errors.New("bad response")
	// ErrAPIMissing: HTTP 404 for /api/v2.0 itself. Firmware older than
	// 4.24.1 has no REST API v2.0.
	ErrAPIMissing = errors.New("no REST API v2.0")
	// ErrNotFound: the device answered "notfound" for an id, such as an
	// unknown channel or publisher.
	ErrNotFound = errors.New("not found")
	// ErrRejected: the device answered with an error envelope other than
	// "notfound", such as "badrequest", or with a 200 whose status is not
	// "ok".
	ErrRejected = errors.New("rejected")
)

// Reasons classify an *Error more finely than its Kind. They label the
// pearld_pearl_request_errors_total metric and tell device_health which
// transitions are worth an event.
const (
	ReasonTimeout      = "timeout"      // no answer within the timeout
	ReasonRefused      = "refused"      // connection refused
	ReasonNetwork      = "network"      // other connection failures (reset, DNS, ...)
	ReasonTLS          = "tls"          // TLS handshake or certificate failure
	ReasonUnavailable  = "unavailable"  // HTTP 5xx
	ReasonBadResponse  = "bad_response" // not the JSON the API promises
	ReasonRedirect     = "redirect"     // HTTP 3xx
	ReasonUnauthorized = "unauthorized" // HTTP 401
	ReasonForbidden    = "forbidden"    // HTTP 403
	ReasonAPIMissing   = "api_missing"  // HTTP 404 for /api/v2.0
	ReasonNotFound     = "not_found"    // "notfound" envelope
	ReasonRejected     = "rejected"     // other error envelopes
)

// Error is a failed request to a device. Match its kind with errors.Is
// (ErrUnauthorized, ErrUnavailable, ...) and read the details with
// errors.As.
type Error struct {
	// Method and Path name the request; Path is relative to /api/v2.0,
	// such as "/channels".
	Method, Path string
	// Kind is one of the Err* values of this package.
	Kind error
	// Reason is one of the Reason* values of this package.
	Reason string
	// StatusCode is the HTTP status of the answer, 0 when there was none.
	StatusCode int
	// APIStatus is the status of the device's error envelope ("notfound",
	// "badrequest", "error", ...), "" when the answer had none.
	APIStatus string
	// Message describes the failure for people, such as
	// "unauthorized (HTTP 401): wrong username or password".
	Message string
	// Err is the underlying cause, if any (a network or JSON error).
	Err error
}

// Error returns "METHOD PATH: Message".
func (e *Error) Error() string {
	return e.Method + " " + e.Path + ": " + e.Message
}

// Unwrap returns the Kind and the underlying cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// ReasonOf returns the Reason of err when it is or wraps an *Error, and
// "" otherwise.
func ReasonOf(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Reason
	}
	return ""
}

// errTimeout is the cause of a request context whose per-request timeout
// expired, to tell it from the caller's cancellation.
var errTimeout = errors.New("request timeout")

// transportError classifies a failure to get a complete answer. reqCtx is
// the request's context, whose cause tells a timeout apart.
func (c *Client) transportError(reqCtx context.Context, method, path string, err error) *Error {
	e := &Error{Method: method, Path: path, Kind: ErrUnavailable, Err: err}
	var (
		certErr  *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
		recordHd tls.RecordHeaderError
		alert    tls.AlertError
	)
	switch {
	case errors.Is(context.Cause(reqCtx), errTimeout):
		e.Reason = ReasonTimeout
		e.Message = fmt.Sprintf("device unavailable: no answer within %s", c.timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Reason = ReasonRefused
		e.Message = "device unavailable: connection refused"
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &hostErr), errors.As(err, &invalid):
		e.Reason = ReasonTLS
		e.Message = "device unavailable: TLS certificate not trusted (" + rootCause(err).Error() +
			"); for a self-signed certificate set insecure_skip_verify = true on the device"
	case errors.As(err, &recordHd),
		// net/http replaces the RecordHeaderError with a plain error
		// when the answer looks like HTTP.
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		e.Reason = ReasonTLS
		e.Message = "device unavailable: TLS handshake failed: the device does not speak HTTPS at this address; use an http:// address"
	case errors.As(err, &alert):
		e.Reason = ReasonTLS
		e.Message = "device unavailable: TLS handshake failed: " + alert.Error()
	case errors.Is(err, io.ErrUnexpectedEOF):
		e.Kind, e.Reason = ErrBadResponse, ReasonBadResponse
		e.Message = "bad response: truncated body"
	default:
		e.Reason = ReasonNetwork
		e.Message = "device unavailable: " + rootCause(err).Error()
	}
	return e
}

// rootCause strips the *url.Error and *net.OpError wrappers, whose text
// repeats the method, URL and addresses.
func rootCause(err error) error {
	for {
		switch e := err.(type) {
		case *url.Error:
			if e.Err == nil {
				return err
			}
			err = e.Err
		case *net.OpError:
			if e.Err == nil {
				return err
			}
			err = e.Err
		default:
			return err
		}
	}
}

// statusError classifies an HTTP error status. env is the device's error
// envelope when the body was one, nil otherwise.
func statusError(method, path string, code int, env *envelope) *Error {
	e := &Error{Method: method, Path: path, StatusCode: code}
	said := ""
	if env != nil {
		e.APIStatus = env.Status
		if env.Message != "" {
			said = ": device says " + fmt.Sprintf("%q", env.Message)
		}
	}
	switch {
	case code == http.StatusUnauthorized:
		e.Kind, e.Reason = ErrUnauthorized, ReasonUnauthorized
		e.Message = "unauthorized (HTTP 401): wrong username or password"
	case code == http.StatusForbidden:
		e.Kind, e.Reason = ErrUnauthorized, ReasonForbidden
		e.Message = "forbidden (HTTP 403): the account may not use the API" + said
	case code == http.StatusNotFound && env == nil:
		e.Kind, e.Reason = ErrAPIMissing, ReasonAPIMissing
		e.Message = "no REST API v2.0 (HTTP 404): firmware older than 4.24.1 has no /api/v2.0; update the device's firmware"
	case code == http.StatusNotFound:
		e.Kind, e.Reason = ErrNotFound, ReasonNotFound
		e.Message = "not found (HTTP 404)" + said
	case code >= 500:
		e.Kind, e.Reason = ErrUnavailable, ReasonUnavailable
		e.Message = fmt.Sprintf("device unavailable (HTTP %d %s)", code, http.StatusText(code))
		if code == http.StatusServiceUnavailable && env == nil {
			e.Message += ": booting or overloaded"
		}
		e.Message += said
	case code >= 300 && code < 400:
		e.Kind, e.Reason = ErrBadResponse, ReasonRedirect
		e.Message = fmt.Sprintf("bad response: redirect (HTTP %d)", code)
	case env != nil:
		e.Kind, e.Reason = ErrRejected, ReasonRejected
		e.Message = fmt.Sprintf("rejected (HTTP %d %s)%s", code, env.Status, said)
	default:
		e.Kind, e.Reason = ErrRejected, ReasonRejected
		e.Message = fmt.Sprintf("rejected (HTTP %d %s)", code, http.StatusText(code))
	}
	return e
}

// badResponse returns an ErrBadResponse error.
func badResponse(method, path string, code int, msg string, cause error) *Error {
	return &Error{
		Method: method, Path: path, StatusCode: code,
		Kind: ErrBadResponse, Reason: ReasonBadResponse,
		Message: "bad response: " + msg, Err: cause,
	}
}
