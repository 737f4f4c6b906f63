package pearltest

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// apiPrefix is where a Pearl serves REST API v2.0.
const apiPrefix = "/api/v2.0"

// ServeHTTP serves the REST API v2.0 under /api/v2.0. It counts the
// request, applies the current fault, checks Basic auth and answers.
func (d *Device) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fault, delay, overLimit := d.begin(r.URL.Path)
	defer d.end()
	if overLimit {
		writeError(w, http.StatusServiceUnavailable, "error", "Too many concurrent requests")
		return
	}
	if serveFault(r.Context(), w, r, fault, delay) {
		return
	}
	if fault == FaultTruncated {
		serveTruncated(w, r, http.HandlerFunc(d.serveAPI))
		return
	}
	d.serveAPI(w, r)
}

// serveAPI checks auth and routes a request.
func (d *Device) serveAPI(w http.ResponseWriter, r *http.Request) {
	if !d.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="Pearl"`)
		writeError(w, http.StatusUnauthorized, "error", "Unauthorized")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, apiPrefix+"/")
	if !ok {
		writeError(w, http.StatusNotFound, "notfound", "Resource not found")
		return
	}
	method, handle := d.route(strings.Split(rest, "/"))
	if handle == nil {
		writeError(w, http.StatusNotFound, "notfound", "Resource not found")
		return
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "error", fmt.Sprintf("Method %s not allowed", r.Method))
		return
	}
	handle(w, r)
}

func (d *Device) authorized(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	d.mu.Lock()
	wantUser, wantPass := d.username, d.password
	d.mu.Unlock()
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(wantUser))
	passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(wantPass))
	return userOK&passOK == 1
}

type handlerFunc = func(w http.ResponseWriter, r *http.Request)

// route returns the method a path allows and its handler, or a nil
// handler for a path the API does not have. seg is the path after
// /api/v2.0/, split at slashes.
func (d *Device) route(seg []string) (string, handlerFunc) {
	get := http.MethodGet
	switch {
	case match(seg, "channels"):
		return get, d.getChannels
	case match(seg, "channels", "*", "name"):
		return get, d.channelGetter(seg[1], func(c *channel, _ time.Time) any { return c.name })
	case match(seg, "channels", "*", "publishers"), match(seg, "channels", "*", "publishers", "type"):
		return get, d.channelGetter(seg[1], func(c *channel, _ time.Time) any { return publisherTypes(c) })
	case match(seg, "channels", "*", "publishers", "status"):
		return get, d.channelGetter(seg[1], publisherStatuses)
	case match(seg, "channels", "*", "publishers", "control", "*"):
		return d.control(seg[1], "", seg[4])
	case match(seg, "channels", "*", "publishers", "*", "control", "*"):
		return d.control(seg[1], seg[3], seg[5])
	case match(seg, "channels", "*", "publishers", "*", "*"):
		var get func(c *channel, p *publisher, now time.Time) any
		switch seg[4] {
		case "status":
			get = func(c *channel, p *publisher, now time.Time) any { return statusJSON(c, p, now) }
		case "type":
			get = func(_ *channel, p *publisher, _ time.Time) any { return p.typ }
		case "name":
			get = func(_ *channel, p *publisher, _ time.Time) any { return p.name }
		case "settings":
			get = func(_ *channel, p *publisher, _ time.Time) any { return settingsJSON(p) }
		default:
			return "", nil
		}
		return http.MethodGet, d.publisherGetter(seg[1], seg[3], get)
	case match(seg, "system", "status"):
		return get, d.getter(func() any { return systemJSON(d.sys.at(d.now())) })
	case match(seg, "system", "ident"):
		return get, d.getter(func() any {
			return map[string]any{"name": d.name, "location": d.location, "description": d.description}
		})
	case match(seg, "system", "firmware"):
		return get, d.getter(func() any {
			return map[string]any{"version": d.firmware, "revision": "250107_1e4514f",
				"product_id": 44, "product_name": d.product}
		})
	case match(seg, "system", "firmware", "*"):
		var get func() any
		switch seg[2] {
		case "version":
			get = func() any { return d.firmware }
		case "revision":
			get = func() any { return "250107_1e4514f" }
		case "product_id":
			get = func() any { return 44 }
		case "product_name":
			get = func() any { return d.product }
		default:
			return "", nil
		}
		return http.MethodGet, d.getter(get)
	}
	return "", nil
}

// match reports whether seg matches pattern, where "*" matches any
// non-empty segment.
func match(seg []string, pattern ...string) bool {
	if len(seg) != len(pattern) {
		return false
	}
	for i, p := range pattern {
		if seg[i] == "" || (p != "*" && p != seg[i]) {
			return false
		}
	}
	return true
}

// getter serves the result of fn, called under the device lock.
func (d *Device) getter(fn func() any) handlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		result := fn()
		d.mu.Unlock()
		writeOK(w, result)
	}
}

func (d *Device) channelGetter(cid string, fn func(c *channel, now time.Time) any) handlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		now := d.now()
		c := d.channel(cid, now)
		var result any
		if c != nil {
			result = fn(c, now)
		}
		d.mu.Unlock()
		if c == nil {
			writeNotFound(w, &notFoundError{channel: cid})
			return
		}
		writeOK(w, result)
	}
}

func (d *Device) publisherGetter(cid, pid string, fn func(c *channel, p *publisher, now time.Time) any) handlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		now := d.now()
		c, p, err := d.lookup(cid, pid, now)
		var result any
		if err == nil {
			result = fn(c, p, now)
		}
		d.mu.Unlock()
		if err != nil {
			writeNotFound(w, err)
			return
		}
		writeOK(w, result)
	}
}

// control returns the handler of .../control/start|stop for one publisher
// (pid != "") or every publisher of a channel.
func (d *Device) control(cid, pid, action string) (string, handlerFunc) {
	if action != "start" && action != "stop" {
		return "", nil
	}
	return http.MethodPost, func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		now := d.now()
		var targets []*publisher
		c, p, err := d.lookup(cid, pid, now)
		switch {
		case pid == "" && c != nil:
			targets, err = c.publishers, nil
		case err == nil:
			targets = []*publisher{p}
		}
		for _, p := range targets {
			if action == "start" {
				p.start(now, d.controlDelay)
			} else {
				p.stop()
			}
		}
		d.mu.Unlock()
		if err != nil {
			writeNotFound(w, err)
			return
		}
		writeBody(w, http.StatusOK, "application/json", `{"status":"ok"}`)
	}
}

type channelJSON struct {
	ID           string           `json:"id"`
	Name         string           `json:"name"`
	Publishers   *[]publisherJSON `json:"publishers,omitempty"`
	Encoders     []encoderJSON    `json:"encoders,omitempty"`
	ActiveLayout map[string]any   `json:"active_layout,omitempty"`
}

type publisherJSON struct {
	ID       string         `json:"id"`
	Type     string         `json:"type"`
	Name     string         `json:"name"`
	Status   map[string]any `json:"status,omitempty"`
	Settings map[string]any `json:"settings,omitempty"`
}

type encoderJSON struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Name       string `json:"name"`
	Resolution string `json:"resolution,omitempty"`
	Framerate  int    `json:"framerate,omitempty"`
	Bitrate    int    `json:"bitrate"`
	Channels   int    `json:"channels,omitempty"`
}

// getChannels serves GET /channels with its ids, publishers,
// publishers-status, publishers-settings, encoders and active_layout
// parameters. Unknown ids in ids are left out of the result.
func (d *Device) getChannels(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var flags [5]bool
	for i, name := range []string{"publishers", "publishers-status", "publishers-settings", "encoders", "active_layout"} {
		v, err := boolParam(q, name)
		if err != nil {
			writeError(w, http.StatusBadRequest, "badrequest", err.Error())
			return
		}
		flags[i] = v
	}
	withPubs, withStatus, withSettings, withEncoders, withLayout := flags[0], flags[1], flags[2], flags[3], flags[4]
	ids := idsParam(q)

	d.mu.Lock()
	now := d.now()
	result := []channelJSON{}
	for _, c := range d.channels {
		if ids != nil && !ids[c.id] {
			continue
		}
		c.advance(now)
		cj := channelJSON{ID: c.id, Name: c.name}
		if withPubs {
			pubs := []publisherJSON{}
			for _, p := range c.publishers {
				pj := publisherJSON{ID: p.id, Type: p.typ, Name: p.name}
				if withStatus {
					pj.Status = statusJSON(c, p, now)
				}
				if withSettings {
					pj.Settings = settingsJSON(p)
				}
				pubs = append(pubs, pj)
			}
			cj.Publishers = &pubs
		}
		if withEncoders {
			cj.Encoders = encodersJSON(c.encoder)
		}
		if withLayout {
			cj.ActiveLayout = layoutJSON(c)
		}
		result = append(result, cj)
	}
	d.mu.Unlock()
	writeOK(w, result)
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("invalid value '%s' for parameter '%s'", v, name)
	}
	return b, nil
}

// idsParam returns the set of channel ids in ids=, or nil for all.
func idsParam(q url.Values) map[string]bool {
	if !q.Has("ids") || q.Get("ids") == "" {
		return nil
	}
	set := make(map[string]bool)
	for _, v := range q["ids"] {
		for id := range strings.SplitSeq(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				set[id] = true
			}
		}
	}
	return set
}

func publisherTypes(c *channel) any {
	out := []map[string]string{}
	for _, p := range c.publishers {
		out = append(out, map[string]string{"id": p.id, "type": p.typ, "name": p.name})
	}
	return out
}

func publisherStatuses(c *channel, now time.Time) any {
	out := []map[string]any{}
	for _, p := range c.publishers {
		out = append(out, map[string]any{"id": p.id, "type": p.typ, "status": statusJSON(c, p, now)})
	}
	return out
}

// statusJSON renders a PublisherStatus; for a started SRT publisher it
// advances the statistics, so they grow on every request.
func statusJSON(c *channel, p *publisher, now time.Time) map[string]any {
	st := &p.status
	m := map[string]any{
		"is_configured": st.IsConfigured,
		"started":       st.Started,
		"state":         st.State,
	}
	if st.Description != "" {
		m["description"] = st.Description
	}
	if st.Started && !st.Since.IsZero() {
		m["since"] = st.Since.Unix()
		m["duration"] = int64(max(now.Sub(st.Since), 0) / time.Second)
		m["reconnections"] = st.Reconnections
		if p.typ == TypeSRT && st.State == StateStarted && st.Statistics == nil {
			m["statistics"] = p.stats.render(now, st.Since, c.encoder.Bitrate)
		}
	}
	if st.Statistics != nil {
		m["statistics"] = json.RawMessage(st.Statistics)
	}
	if len(st.Warnings) > 0 {
		ws := make([]map[string]string, 0, len(st.Warnings))
		for _, t := range st.Warnings {
			ws = append(ws, map[string]string{"text": t})
		}
		m["warnings"] = ws
	}
	for k, v := range st.Extra {
		m[k] = v
	}
	return m
}

// settingsJSON renders publisher settings in the spec's PublisherSettings
// shape: type, common, and an object named after the type.
func settingsJSON(p *publisher) map[string]any {
	configured := p.status.IsConfigured
	out := map[string]any{
		"type":   p.typ,
		"common": map[string]any{"enabled": configured, "single_touch": true},
	}
	url := func(u string) string {
		if configured {
			return u
		}
		return ""
	}
	switch p.typ {
	case TypeRTMP:
		out["rtmp"] = map[string]any{
			"disable_audio": false, "url": url("rtmp://live.example.com/app/"),
			"stream": url("stream-" + p.id), "username": "", "password": "", "auto_created": false,
		}
	case TypeSRT:
		srt := map[string]any{
			"disable_audio": false, "mode": p.mode, "latency": 125,
			"bw_recovery_overhead": 25, "encryption": nil,
		}
		switch p.mode {
		case ModeListener:
			srt["port"] = 1025 + len(p.id)
		case ModeRendezvous:
			srt["url"] = url("srt://192.168.1.90:14000")
		default:
			srt["url"] = url("srt://ingest.example.com:9000")
			srt["stream_id"] = ""
		}
		out["srt"] = srt
	default:
		out[strings.ReplaceAll(p.typ, "-", "_")] = map[string]any{"disable_audio": false}
	}
	return out
}

func encodersJSON(e Encoder) []encoderJSON {
	return []encoderJSON{
		{ID: "0", Type: "video", Name: e.Codec, Resolution: e.Resolution, Framerate: e.Framerate, Bitrate: e.Bitrate},
		{ID: "1", Type: "audio", Name: e.AudioCodec, Bitrate: e.AudioBitrate, Channels: e.AudioChannels},
	}
}

func layoutJSON(c *channel) map[string]any {
	src := strings.ToLower(strings.ReplaceAll(c.name, " ", "-"))
	return map[string]any{
		"id":   "1",
		"name": "Default",
		"sources": map[string]any{
			"video": []map[string]string{{"id": "D2P0." + src, "name": c.name}},
			"audio": []map[string]string{{"id": "D2P0." + src + "-audio", "name": c.name + " Audio"}},
		},
	}
}

func systemJSON(s SystemStatus) map[string]any {
	return map[string]any{
		"date":              s.Date,
		"uptime":            s.Uptime,
		"cpuload":           s.CPULoad,
		"cpuload_high":      s.CPULoadHigh,
		"cputemp":           s.CPUTemp,
		"cputemp_threshold": s.CPUTempThreshold,
	}
}

func writeOK(w http.ResponseWriter, result any) {
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
		Result any    `json:"result"`
	}{"ok", result})
}

func writeError(w http.ResponseWriter, code int, status, message string) {
	writeJSON(w, code, struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}{status, message})
}

func writeNotFound(w http.ResponseWriter, err error) {
	writeError(w, http.StatusNotFound, "notfound", err.Error())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		msg, _ := json.Marshal("encoding response: " + err.Error())
		body = fmt.Appendf(nil, `{"status":"error","message":%s}`, msg)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}
