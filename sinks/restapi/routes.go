package restapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pearld/pearld/engine/auth"
)

// access is what a route needs of a token.
type access int

const (
	accessRead    access = iota // realtime_data, audio_streams or admin
	accessAdmin                 // admin
	accessControl               // publisher_control or admin
)

// handler serves a request whose token was verified and grants the
// route's access.
type handler func(w http.ResponseWriter, r *http.Request, c *auth.Claims)

// endpoint is one method of a route.
type endpoint struct {
	method string
	need   access
	serve  handler
}

// route is one URL path of the API with its methods. It is mounted
// without a method in its pattern, so that it answers every method itself:
// a JSON 405 with Allow, and CORS preflights, which carry no token.
type route struct {
	a         *API
	pattern   string // http.ServeMux pattern and metric label
	endpoints []endpoint
	allow     string // the Allow header
}

// routes returns the API's routes. None of them overlaps the hub's
// patterns (GET /{$}, GET /ws, GET /ws/realtime), so both can share one
// server.
func (a *API) routes() []*route {
	const (
		events  = "/api/realtime/events"
		stats   = "/api/realtime/stats"
		health  = "/api/realtime/health"
		cleanup = "/api/realtime/cleanup"
		state   = "/api/device-state/devices/{device}/channels/{channel}/publishers/status"
		channel = "/api/devices/{device}/channels/{channel}/publishers/"
		one     = "/api/devices/{device}/channels/{channel}/publishers/{publisher}/control/"
	)
	rs := []*route{
		{pattern: events, endpoints: []endpoint{
			{http.MethodGet, accessRead, a.serveEvents},
			{http.MethodDelete, accessAdmin, a.serveClear},
		}},
		{pattern: stats, endpoints: []endpoint{{http.MethodGet, accessRead, a.serveStats}}},
		{pattern: health, endpoints: []endpoint{{http.MethodGet, accessRead, a.serveHealth}}},
		{pattern: cleanup, endpoints: []endpoint{{http.MethodPost, accessAdmin, a.serveCleanup}}},
		{pattern: state, endpoints: []endpoint{{http.MethodGet, accessRead, a.serveState}}},
	}
	for _, action := range []string{"start", "stop"} {
		rs = append(rs,
			&route{pattern: channel + action, endpoints: []endpoint{{http.MethodPost, accessControl, a.control(action, false)}}},
			&route{pattern: one + action, endpoints: []endpoint{{http.MethodPost, accessControl, a.control(action, true)}}},
		)
	}
	for _, rt := range rs {
		rt.a = a
		methods := []string{}
		for _, e := range rt.endpoints {
			methods = append(methods, e.method)
			if e.method == http.MethodGet {
				methods = append(methods, http.MethodHead)
			}
		}
		rt.allow = strings.Join(append(methods, http.MethodOptions), ", ")
	}
	return rs
}

// ServeHTTP checks the origin, answers preflights and wrong methods,
// authenticates and authorizes the request, and serves it.
func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, code: http.StatusOK}
	defer func() {
		rt.a.metrics.requests.WithLabelValues(rt.pattern, methodLabel(r.Method), strconv.Itoa(rec.code)).Inc()
		rt.a.metrics.duration.WithLabelValues(rt.pattern).Observe(time.Since(start).Seconds())
	}()
	w = rec
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")

	if origin := r.Header.Get("Origin"); origin != "" {
		if !rt.a.originAllowed(origin) {
			writeError(w, http.StatusForbidden, "origin_not_allowed", "requests from origin "+strconv.Quote(origin)+" are not allowed")
			return
		}
		if rt.a.anyOrigin {
			h.Set("Access-Control-Allow-Origin", "*")
		} else {
			// Origins the operator listed may send credentials
			// (axios withCredentials); the API reads no cookies.
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Add("Vary", "Origin")
		}
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	var ep *endpoint
	for i := range rt.endpoints {
		if rt.endpoints[i].method == method {
			ep = &rt.endpoints[i]
			break
		}
	}
	switch {
	case ep == nil && r.Method == http.MethodOptions:
		h.Set("Allow", rt.allow)
		if r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", rt.allow)
			// Any header may be sent (X-Requested-With of Laravel's
			// axios, ...); only the token headers are read.
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
				h.Set("Access-Control-Allow-Headers", req)
			}
			h.Set("Access-Control-Max-Age", "600")
		}
		w.WriteHeader(http.StatusNoContent)
		return
	case ep == nil:
		h.Set("Allow", rt.allow)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+rt.allow)
		return
	}

	claims, err := rt.a.verifier.Authenticate(r)
	if err == nil {
		err = authorize(claims, ep.need)
	}
	if err != nil {
		rt.a.log.Debug("refusing REST request", "route", rt.pattern, "remote", r.RemoteAddr, "err", err)
		writeAuthError(w, err)
		return
	}
	ep.serve(w, r, claims)
}

// authorize checks that claims grant need.
func authorize(c *auth.Claims, need access) error {
	switch need {
	case accessAdmin:
		if !c.IsAdmin() {
			return fmt.Errorf("%w: this call needs the admin permission", auth.ErrForbidden)
		}
	case accessControl:
		if !c.CanControl() {
			return fmt.Errorf("%w: this call needs the publisher_control or admin permission", auth.ErrForbidden)
		}
	default:
		if !c.CanRead() {
			return fmt.Errorf("%w: this call needs the realtime_data, audio_streams or admin permission", auth.ErrForbidden)
		}
	}
	return nil
}

// deviceFilter returns the devices claim as a filter, nil when the token
// allows every device.
func deviceFilter(c *auth.Claims) func(string) bool {
	if c.Devices == nil {
		return nil
	}
	return c.AllowsDevice
}

// originAllowed checks an Origin header against AllowedOrigins.
func (a *API) originAllowed(origin string) bool {
	if a.anyOrigin {
		return true
	}
	origin = strings.ToLower(origin)
	for _, p := range a.AllowedOrigins {
		if ok, _ := path.Match(strings.ToLower(p), origin); ok {
			return true
		}
	}
	return false
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// recorder remembers the status code of an answer, for metrics.
type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// apiError is the body of every error answer. Error is the short text
// PROTOCOL.md names for 401 and 403 ("Authentication required",
// "Insufficient permissions") and the HTTP status text otherwise; Code is
// a stable, machine-readable cause; Message explains it to people.
type apiError struct {
	Error   string `json:"error"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, apiError{Error: http.StatusText(status), Code: code, Message: message})
}

// writeAuthError answers a refused token with 401 or 403. The body says
// what the call needs, never why a token was refused: that goes to the
// debug log only.
func writeAuthError(w http.ResponseWriter, err error) {
	status := auth.HTTPStatus(err)
	body := apiError{Error: auth.Reason(err), Code: "unauthenticated",
		Message: "send a valid token as Authorization: Bearer <token>, X-Auth-Token or ?token="}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pearld"`)
	} else {
		body.Code = "forbidden"
		body.Message = forbiddenMessage(err)
	}
	writeJSON(w, status, body)
}

// writeForbidden answers 403 for a device the token does not allow.
func writeForbidden(w http.ResponseWriter, device string) {
	writeJSON(w, http.StatusForbidden, apiError{Error: auth.ReasonForbidden, Code: "forbidden",
		Message: "the token does not allow device " + strconv.Quote(device)})
}

// forbiddenMessage is the part of an ErrForbidden error after its prefix:
// what the call needs.
func forbiddenMessage(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, auth.ErrForbidden.Error()+": "); ok {
		return rest
	}
	if errors.Is(err, auth.ErrForbidden) {
		return "the token does not grant this call"
	}
	return msg
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the API's own answer types are encoded here; they always
		// marshal.
		panic("restapi: encoding answer: " + err.Error())
	}
	writeBody(w, status, b)
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
