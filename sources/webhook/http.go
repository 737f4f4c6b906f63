package webhook

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pearld/pearld/engine/auth"
)

// Results of requests: the `error` field of refusals and the label of
// pearld_webhook_requests_total.
const (
	resultAccepted    = "accepted"
	reasonMethod      = "method_not_allowed"     // 405
	reasonUnauth      = "unauthenticated"        // 401
	reasonForbidden   = "forbidden"              // 403
	reasonMediaType   = "unsupported_media_type" // 415
	reasonTooLarge    = "too_large"              // 413
	reasonTimeout     = "timeout"                // 408: the body came too slowly
	reasonMalformed   = "malformed"              // 400: not JSON
	reasonInvalid     = "invalid"                // 400: JSON, but not valid events
	reasonUnavailable = "unavailable"            // 503: the pipeline did not take the events
)

var results = []string{resultAccepted, reasonMethod, reasonUnauth, reasonForbidden, reasonMediaType,
	reasonTooLarge, reasonTimeout, reasonMalformed, reasonInvalid, reasonUnavailable}

// rejection is a refused request: its status, reason and message, and
// for the log only, what caused it when the message does not say.
type rejection struct {
	status int
	reason string
	msg    string
	cause  error
}

func reject(status int, reason, msg string) *rejection {
	return &rejection{status: status, reason: reason, msg: msg}
}

// acceptedBody and errorBody are the JSON answers.
type acceptedBody struct {
	Status string `json:"status"` // "accepted"
	Events int    `json:"events"`
}

type errorBody struct {
	Status  string `json:"status"` // "error"
	Error   string `json:"error"`  // one of the reasons above
	Message string `json:"message"`
}

// ServeHTTP takes one POST of events. It answers 202 once Run has taken
// the request's events to emit, and a JSON error otherwise, in which case
// nothing of the request is emitted.
func (s *Source) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, rej := s.serve(w, r)
	if rej != nil {
		s.metrics.requests.WithLabelValues(rej.reason).Inc()
		log := s.log.With("remote", r.RemoteAddr, "status", rej.status, "reason", rej.reason, "msg", rej.msg)
		if rej.cause != nil {
			log = log.With("err", rej.cause)
		}
		log.Debug("refusing webhook request")
		switch rej.status {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", http.MethodPost)
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Bearer realm="pearld"`)
		case http.StatusServiceUnavailable:
			w.Header().Set("Retry-After", "1")
		}
		writeJSON(w, rej.status, errorBody{Status: "error", Error: rej.reason, Message: rej.msg})
		return
	}
	s.metrics.requests.WithLabelValues(resultAccepted).Inc()
	s.metrics.events.Add(float64(n))
	writeJSON(w, http.StatusAccepted, acceptedBody{Status: "accepted", Events: n})
}

// serve checks a request in order (method, authentication, media type,
// size, content) and hands its events to Run. Nothing of the body is read
// before the caller is authenticated.
func (s *Source) serve(w http.ResponseWriter, r *http.Request) (int, *rejection) {
	if r.Method != http.MethodPost {
		return 0, reject(http.StatusMethodNotAllowed, reasonMethod, "use POST")
	}
	claims, err := s.authenticate(r)
	if err != nil {
		reason := reasonUnauth
		if errors.Is(err, auth.ErrForbidden) {
			reason = reasonForbidden
		}
		rej := reject(auth.HTTPStatus(err), reason, auth.Reason(err))
		rej.cause = err
		return 0, rej
	}
	if msg := checkMediaType(r.Header.Get("Content-Type")); msg != "" {
		return 0, reject(http.StatusUnsupportedMediaType, reasonMediaType, msg)
	}
	tooLarge := reject(http.StatusRequestEntityTooLarge, reasonTooLarge,
		"the body exceeds the limit of "+strconv.Itoa(s.MaxBody)+" bytes")
	if r.ContentLength > int64(s.MaxBody) {
		return 0, tooLarge
	}
	// Not supported by every ResponseWriter (tests); the server's own
	// timeouts apply then.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.Timeout.D()))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.MaxBody)))
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return 0, tooLarge
		case errors.Is(err, os.ErrDeadlineExceeded):
			return 0, reject(http.StatusRequestTimeout, reasonTimeout, "the body did not arrive within "+s.Timeout.String())
		}
		rej := reject(http.StatusBadRequest, reasonMalformed, "reading the body failed")
		rej.cause = err
		return 0, rej
	}
	if len(body) == 0 {
		return 0, reject(http.StatusBadRequest, reasonMalformed, "the body is empty")
	}
	events, rej := s.parse(body, time.Now())
	if rej != nil {
		return 0, rej
	}
	if claims != nil {
		for _, e := range events {
			if !claims.AllowsDevice(e.Device) {
				return 0, reject(http.StatusForbidden, reasonForbidden, "device "+strconv.Quote(e.Device)+" is not allowed by your token")
			}
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.Timeout.D())
	defer cancel()
	if err := s.submit(ctx, events); err != nil {
		return 0, reject(http.StatusServiceUnavailable, reasonUnavailable, err.Error()+"; nothing was accepted, retry later")
	}
	return len(events), nil
}

// authenticate accepts a configured service key in X-Service-Key or a
// token that grants admin. A request carrying X-Service-Key is judged by
// the key alone. The returned claims are nil for a service key, which is
// not limited to devices.
func (s *Source) authenticate(r *http.Request) (*auth.Claims, error) {
	if key := r.Header.Get(ServiceKeyHeader); key != "" {
		if !s.validKey(key) {
			return nil, fmt.Errorf("%w: unknown service key", auth.ErrUnauthenticated)
		}
		return nil, nil
	}
	if s.verifier == nil {
		return nil, fmt.Errorf("%w: no service key, and tokens are not configured", auth.ErrUnauthenticated)
	}
	c, err := s.verifier.Authenticate(r)
	if err != nil {
		return nil, err
	}
	if !c.IsAdmin() {
		return nil, fmt.Errorf("%w: the token does not grant admin", auth.ErrForbidden)
	}
	return c, nil
}

// validKey compares key with every configured key in constant time. The
// SHA-256 digests are compared, not the keys, so that neither the length
// of a configured key nor which one matched shows in the timing.
func (s *Source) validKey(key string) bool {
	d := sha256.Sum256([]byte(key))
	match := 0
	for i := range s.keyDigests {
		match |= subtle.ConstantTimeCompare(d[:], s.keyDigests[i][:])
	}
	return match == 1
}

// checkMediaType accepts application/json and application/*+json, in
// UTF-8 (RFC 8259); it returns why another Content-Type is refused.
func checkMediaType(ct string) string {
	const want = "Content-Type must be application/json"
	if ct == "" {
		return want
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return want
	}
	if mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return want + ", not " + mt
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return "JSON must be UTF-8, not " + cs
	}
	return ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
