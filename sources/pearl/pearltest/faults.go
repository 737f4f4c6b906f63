package pearltest

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"
)

// Fault is a failure a Device answers with instead of (or before) its
// normal answer, as seen in the field. Faults apply to every path unless
// noted.
type Fault int

const (
	// FaultNone answers normally.
	FaultNone Fault = iota
	// FaultSlow sleeps the fault delay (SetFaultDelay, default 2s) before
	// answering normally; it gives up without answering when the request's
	// context ends.
	FaultSlow
	// FaultUnauthorized answers 401 with WWW-Authenticate: Basic and an
	// error envelope, whatever the credentials.
	FaultUnauthorized
	// FaultForbidden answers 403 with an error envelope.
	FaultForbidden
	// FaultUnavailable answers 503 with an HTML "booting" page.
	FaultUnavailable
	// FaultGarbage answers 200 with a body that is not JSON.
	FaultGarbage
	// FaultTruncated answers 200 with the normal JSON cut mid-way. The
	// request takes effect (a start still starts).
	FaultTruncated
	// FaultEmpty answers 200 with an empty body.
	FaultEmpty
	// FaultHTML answers 200 with a text/html error page.
	FaultHTML
	// FaultNotOK answers 200 with {"status":"error","message":"..."}.
	FaultNotOK
	// FaultNotFoundAPI answers 404 for everything under /api/v2.0, as
	// firmware older than 4.24.1 does.
	FaultNotFoundAPI
)

var faultNames = [...]string{
	FaultNone:         "none",
	FaultSlow:         "slow",
	FaultUnauthorized: "unauthorized",
	FaultForbidden:    "forbidden",
	FaultUnavailable:  "unavailable",
	FaultGarbage:      "garbage",
	FaultTruncated:    "truncated",
	FaultEmpty:        "empty",
	FaultHTML:         "html",
	FaultNotOK:        "notok",
	FaultNotFoundAPI:  "notfoundapi",
}

// String returns the fault's short name, such as "slow".
func (f Fault) String() string {
	if f >= 0 && int(f) < len(faultNames) {
		return faultNames[f]
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// Faults returns every fault other than FaultNone.
func Faults() []Fault {
	out := make([]Fault, 0, len(faultNames)-1)
	for f := FaultNone + 1; int(f) < len(faultNames); f++ {
		out = append(out, f)
	}
	return out
}

// SetFault makes every later request fail with f until it is set back to
// FaultNone. Faults injected with InjectFault take precedence.
func (d *Device) SetFault(f Fault) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fault = f
}

// SetFaultDelay sets how long FaultSlow sleeps; default 2s.
func (d *Device) SetFaultDelay(delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faultDelay = delay
}

// InjectFault makes the next n requests fail with f, then the device
// returns to the fault set with SetFault. It replaces an earlier injection.
func (d *Device) InjectFault(f Fault, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.injected, d.injectedCount = f, max(n, 0)
}

const bootingPage = `<!DOCTYPE html>
<html><head><title>Pearl is booting</title></head>
<body><h1>System is booting</h1><p>Please wait, the device is starting up.</p></body></html>
`

const errorPage = `<!DOCTYPE html>
<html><head><title>500 Internal Server Error</title></head>
<body><h1>Internal Server Error</h1><p>The server encountered an internal error.</p></body></html>
`

const notFoundPage = `<!DOCTYPE html>
<html><head><title>404 Not Found</title></head>
<body><h1>Not Found</h1><p>The requested URL was not found on this server.</p></body></html>
`

// serveFault writes the answer for f and reports whether it did; for
// FaultNone, FaultSlow (after its sleep) and FaultTruncated it writes
// nothing and the caller continues. FaultSlow reports handled without
// writing when the request ends while it sleeps.
func serveFault(ctx context.Context, w http.ResponseWriter, r *http.Request, f Fault, delay time.Duration) (handled bool) {
	switch f {
	case FaultSlow:
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
			return false
		case <-ctx.Done():
			return true
		}
	case FaultUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="Pearl"`)
		writeError(w, http.StatusUnauthorized, "error", "Unauthorized")
	case FaultForbidden:
		writeError(w, http.StatusForbidden, "forbidden", "Access denied")
	case FaultUnavailable:
		w.Header().Set("Retry-After", "10")
		writeBody(w, http.StatusServiceUnavailable, "text/html; charset=utf-8", bootingPage)
	case FaultGarbage:
		writeBody(w, http.StatusOK, "application/json", "\x00\x1f<<garbage>> status=ok result=\xff\xfe")
	case FaultEmpty:
		writeBody(w, http.StatusOK, "application/json", "")
	case FaultHTML:
		writeBody(w, http.StatusOK, "text/html; charset=utf-8", errorPage)
	case FaultNotOK:
		writeError(w, http.StatusOK, "error", "Internal error: request could not be processed")
	case FaultNotFoundAPI:
		if !strings.HasPrefix(r.URL.Path, apiPrefix+"/") && r.URL.Path != apiPrefix {
			return false
		}
		writeBody(w, http.StatusNotFound, "text/html; charset=utf-8", notFoundPage)
	default:
		return false
	}
	return true
}

// serveTruncated runs next and writes the first half of its body.
func serveTruncated(w http.ResponseWriter, r *http.Request, next http.Handler) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	body := bytes.TrimSpace(rec.Body.Bytes())
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body[:len(body)/2])
}

func writeBody(w http.ResponseWriter, code int, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}
