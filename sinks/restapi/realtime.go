package restapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
)

// idPattern is what device, channel and publisher ids may be made of
// (PROTOCOL.md, "Identities and keys").
var idPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// serveEvents answers GET /api/realtime/events with the newest matching
// events, oldest first. A token with a devices claim sees only those
// devices; naming another device is 403.
func (a *API) serveEvents(w http.ResponseWriter, r *http.Request, c *auth.Claims) {
	q, msg := parseQuery(r.URL.Query())
	if msg != "" {
		writeError(w, http.StatusBadRequest, "invalid_params", msg)
		return
	}
	if q.device != "" && !c.AllowsDevice(q.device) {
		writeForbidden(w, q.device)
		return
	}
	q.allow = deviceFilter(c)
	found := a.store.find(q, a.now())
	n := 2 + len(found)
	for _, b := range found {
		n += len(b)
	}
	body := make([]byte, 0, n)
	body = append(body, '[')
	body = append(body, bytes.Join(found, []byte{','})...)
	body = append(body, ']')
	writeBody(w, http.StatusOK, body)
}

// parseQuery reads the parameters of GET /api/realtime/events. It returns
// a message for the first bad one. Other parameters (token, cache
// busters) are ignored.
func parseQuery(v url.Values) (query, string) {
	q := query{device: v.Get("device"), channel: v.Get("channel"), typ: v.Get("type"), limit: defaultLimit}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return q, fmt.Sprintf("limit must be an integer from 1 to %d, not %q", maxLimit, s)
		}
		q.limit = n
	}
	if s := v.Get("since"); s != "" {
		n, ok := parseUint(s)
		if !ok {
			return q, fmt.Sprintf("since must be a seq: a non-negative integer, not %q", s)
		}
		q.since = n
	}
	for _, p := range []struct{ name, value string }{{"device", q.device}, {"channel", q.channel}} {
		if p.value != "" && !idPattern.MatchString(p.value) {
			return q, fmt.Sprintf("%s must be 1 to 64 of A-Z a-z 0-9 . _ : -, not %q", p.name, p.value)
		}
	}
	if len(q.typ) > 64 {
		return q, "type must be at most 64 characters"
	}
	return q, ""
}

// statsAnswer is the body of GET /api/realtime/stats.
type statsAnswer struct {
	Status    string    `json:"status"`
	Stats     statsBody `json:"stats"`
	Timestamp string    `json:"timestamp"`
}

type statsBody struct {
	summary
	// Store holds the store-wide counters; only tokens that may see
	// every device get them.
	Store *totals `json:"store,omitempty"`
}

// serveStats answers GET /api/realtime/stats: counts of the events the
// caller may see and, for callers who may see every device, the store's
// counters.
func (a *API) serveStats(w http.ResponseWriter, _ *http.Request, c *auth.Claims) {
	now := a.now()
	allow := deviceFilter(c)
	body := statsBody{summary: a.store.summarize(allow, now)}
	if allow == nil {
		t := a.store.totals()
		body.Store = &t
	}
	writeJSON(w, http.StatusOK, statsAnswer{Status: "ok", Stats: body, Timestamp: isoTime(now)})
}

// healthAnswer is the body of GET /api/realtime/health.
type healthAnswer struct {
	Status       string `json:"status"`
	Service      string `json:"service"`
	Version      string `json:"version"`
	ActiveEvents int    `json:"active_events"`
	Timestamp    string `json:"timestamp"`
}

// serveHealth answers GET /api/realtime/health. active_events counts the
// unexpired events the caller may see.
func (a *API) serveHealth(w http.ResponseWriter, _ *http.Request, c *auth.Claims) {
	now := a.now()
	writeJSON(w, http.StatusOK, healthAnswer{
		Status: "healthy", Service: "realtime-events", Version: engine.Version,
		ActiveEvents: a.store.live(deviceFilter(c), now), Timestamp: isoTime(now),
	})
}

// clearAnswer is the body of DELETE /api/realtime/events.
type clearAnswer struct {
	Status  string `json:"status"`
	Cleared int    `json:"cleared_events"`
	Message string `json:"message"`
}

// serveClear answers DELETE /api/realtime/events: it empties the event
// store. The latest state is not touched.
func (a *API) serveClear(w http.ResponseWriter, _ *http.Request, c *auth.Claims) {
	n, expired := a.store.clear(a.now())
	a.metrics.expired.Add(float64(expired))
	a.metrics.stored.Set(float64(a.store.held()))
	a.log.Info("event store cleared", "sub", c.Subject, "events", n)
	writeJSON(w, http.StatusOK, clearAnswer{Status: "ok", Cleared: n, Message: fmt.Sprintf("Cleared %d events", n)})
}

// cleanupAnswer is the body of POST /api/realtime/cleanup.
type cleanupAnswer struct {
	Status  string `json:"status"`
	Cleaned int    `json:"cleaned_events"`
	Message string `json:"message"`
}

// serveCleanup answers POST /api/realtime/cleanup: it removes the expired
// events still held.
func (a *API) serveCleanup(w http.ResponseWriter, _ *http.Request, c *auth.Claims) {
	n := a.store.cleanup(a.now())
	a.metrics.expired.Add(float64(n))
	a.metrics.stored.Set(float64(a.store.held()))
	a.log.Debug("event store cleaned up", "sub", c.Subject, "events", n)
	writeJSON(w, http.StatusOK, cleanupAnswer{Status: "ok", Cleaned: n,
		Message: fmt.Sprintf("Removed %d expired events", n)})
}

// stateAnswer is the body of GET .../publishers/status: the latest
// publisher_status event of a channel. Publishers repeats data.publishers
// for clients that want only them; Data is the event's payload as
// data_update frames carry it.
type stateAnswer struct {
	Status     string          `json:"status"`
	Device     string          `json:"device"`
	Channel    string          `json:"channel"`
	Publishers json.RawMessage `json:"publishers"`
	Data       json.RawMessage `json:"data"`
	Timestamp  string          `json:"timestamp"`
	Seq        uint64          `json:"seq"`
}

// serveState answers GET /api/device-state/devices/{device}/channels/
// {channel}/publishers/status from memory, never from the device.
func (a *API) serveState(w http.ResponseWriter, r *http.Request, c *auth.Claims) {
	device, channel, ok := a.target(w, r, c, false)
	if !ok {
		return
	}
	e, found := a.latestState(engine.MakeKey(TypePublisherStatus, device, channel, ""))
	if !found {
		writeError(w, http.StatusNotFound, "no_data",
			fmt.Sprintf("no publisher status of device %s channel %s is known yet", device, channel))
		return
	}
	var data struct {
		Publishers json.RawMessage `json:"publishers"`
	}
	if err := json.Unmarshal(e.Data, &data); err != nil || len(data.Publishers) == 0 || string(data.Publishers) == "null" {
		data.Publishers = json.RawMessage("[]")
	}
	writeJSON(w, http.StatusOK, stateAnswer{
		Status: "ok", Device: device, Channel: channel, Publishers: data.Publishers,
		Data: e.Data, Timestamp: isoTime(e.Time), Seq: e.Seq,
	})
}

// target reads and checks the device, channel and (with publisher) the
// publisher of a route's path: 400 for a malformed id, 403 for a device
// the token does not allow, 404 for a device the pipeline does not have.
// The device is checked against the token first, so a token limited to
// some devices cannot probe which others exist.
func (a *API) target(w http.ResponseWriter, r *http.Request, c *auth.Claims, publisher bool) (device, channel string, ok bool) {
	device, channel = r.PathValue("device"), r.PathValue("channel")
	ids := []struct{ name, value string }{{"device", device}, {"channel", channel}}
	if publisher {
		ids = append(ids, struct{ name, value string }{"publisher", r.PathValue("publisher")})
	}
	for _, id := range ids {
		if !idPattern.MatchString(id.value) {
			writeError(w, http.StatusBadRequest, "invalid_params",
				fmt.Sprintf("%s id must be 1 to 64 of A-Z a-z 0-9 . _ : -, not %q", id.name, id.value))
			return "", "", false
		}
	}
	if !c.AllowsDevice(device) {
		writeForbidden(w, device)
		return "", "", false
	}
	if a.devices[device] == nil {
		writeError(w, http.StatusNotFound, "unknown_device",
			fmt.Sprintf("device %s is not configured in this pipeline", device))
		return "", "", false
	}
	return device, channel, true
}
