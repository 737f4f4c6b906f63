package pearl

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pearld/pearld/engine"
)

const (
	// MaxInFlight is the most requests a Client has in flight to its
	// device: real Pearls fail most requests beyond about three.
	MaxInFlight = 2
	// MaxBodySize bounds an answer's body; a longer one is ErrBadResponse.
	MaxBodySize = 4 << 20
	// DefaultTimeout bounds one request when the device sets no timeout.
	DefaultTimeout = 5 * time.Second
	// DefaultUsername is used when the device sets no username.
	DefaultUsername = "admin"

	apiPrefix = "/api/v2.0"
)

// Client is the REST API v2.0 client of one Pearl. It is the only place
// requests to its device are made: it holds at most MaxInFlight of them in
// flight (callers beyond wait for a slot, or for their context to end),
// sends HTTP Basic auth on every call, bounds each request by the device's
// timeout and reuses connections. Its methods are safe for concurrent use.
//
// Errors of requests are *Error values (see the Err* kinds), or wrap
// ctx.Err() when the caller's context ended first.
type Client struct {
	name     string
	host     string // host of the configured address: device_ip
	base     string // scheme://host[:port][/prefix]/api/v2.0
	username string
	password string
	timeout  time.Duration

	http      *http.Client
	transport *http.Transport
	slots     chan struct{}
	metrics   *deviceMetrics

	kickMu sync.Mutex
	kickCh chan struct{}
	relay  func() // passes kicks on to other pearld instances (leases); guarded by kickMu
}

// ClientOptions tune NewClient; the zero value is usable.
type ClientOptions struct {
	// Metrics counts the client's requests; nil counts nothing.
	Metrics *Metrics
}

// NewClient returns a client for d. It validates the address and builds
// the transport; it does not touch the network. Most callers want
// ClientFor, which shares one client per device in a pipeline.
func NewClient(d *engine.Device, opts ClientOptions) (*Client, error) {
	base, host, err := parseAddress(d.Address)
	if err != nil {
		return nil, fmt.Errorf("configuring device %s: %w", d.Name, err)
	}
	timeout := d.Timeout.D()
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	username := d.Username
	if username == "" {
		username = DefaultUsername
	}
	m := opts.Metrics
	if m == nil {
		m, _ = NewMetrics(nil) // unregistered: counts into the void
	}
	tr := &http.Transport{
		// Devices sit on the local network: no proxy from the environment.
		Proxy: nil,
		// The request's context bounds dialing, the TLS handshake and
		// the answer, so every timeout is reported alike.
		DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: d.InsecureSkipVerify}, //nolint:gosec // opt-in per device
		MaxIdleConns:        MaxInFlight,
		MaxIdleConnsPerHost: MaxInFlight,
		MaxConnsPerHost:     MaxInFlight,
		IdleConnTimeout:     30 * time.Second,
	}
	c := &Client{
		name:      d.Name,
		host:      host,
		base:      base,
		username:  username,
		password:  d.Password,
		timeout:   timeout,
		transport: tr,
		http: &http.Client{
			Transport: tr,
			// A redirect would turn a control POST into a GET; report it
			// instead, so the address can be fixed (http -> https).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		slots:   make(chan struct{}, MaxInFlight),
		metrics: m.forDevice(d.Name),
		kickCh:  make(chan struct{}),
	}
	return c, nil
}

// ClientFor returns the client of device d shared by every component of
// env's pipeline, creating it on first use. Its metrics are registered
// once per pipeline with env.Metrics, and it is closed when the pipeline
// stops.
func ClientFor(env *engine.Env, d *engine.Device) (*Client, error) {
	mv, err := env.Resource("pearl.metrics", func() (any, error) { return NewMetrics(env.PipelineMetrics) })
	if err != nil {
		return nil, err
	}
	v, err := env.Resource("pearl.client/"+d.Name, func() (any, error) {
		return NewClient(d, ClientOptions{Metrics: mv.(*Metrics)})
	})
	if err != nil {
		return nil, err
	}
	c, ok := v.(*Client)
	if !ok {
		return nil, fmt.Errorf("getting client of device %s: resource is a %T", d.Name, v)
	}
	return c, nil
}

// parseAddress turns a device address ("host", "host:port", "http://...",
// "https://...") into the API base URL and the bare host.
func parseAddress(addr string) (base, host string, err error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", "", errors.New("parsing address: empty")
	}
	raw := addr
	if !strings.Contains(addr, "://") {
		if ip := net.ParseIP(addr); ip != nil && strings.Contains(addr, ":") {
			raw = "[" + addr + "]" // a bare IPv6 address
		}
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("parsing address %q: %w", addr, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", "", fmt.Errorf("parsing address %q: scheme must be http or https", addr)
	case u.Hostname() == "":
		return "", "", fmt.Errorf("parsing address %q: no host", addr)
	case u.User != nil:
		return "", "", fmt.Errorf("parsing address %q: put credentials in username and password, not in the address", addr)
	case u.RawQuery != "" || u.Fragment != "":
		return "", "", fmt.Errorf("parsing address %q: no query or fragment allowed", addr)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("parsing address %q: bad port %q", addr, p)
		}
	}
	// A path is a prefix in front of /api/v2.0 (a reverse proxy).
	prefix := strings.TrimSuffix(u.EscapedPath(), "/")
	prefix = strings.TrimSuffix(prefix, apiPrefix)
	return u.Scheme + "://" + u.Host + prefix + apiPrefix, u.Hostname(), nil
}

// Name returns the device's name in the pipeline: its id in events.
func (c *Client) Name() string { return c.name }

// Host returns the host of the configured address, without port: the
// device_ip of events.
func (c *Client) Host() string { return c.host }

// Timeout returns the bound of one request.
func (c *Client) Timeout() time.Duration { return c.timeout }

// Kick makes every poller of the device poll at once, and the publisher
// poller poll fast until the publishers settle. Control methods call it
// after the device accepted a command; call it when something else is
// known to have changed the device. With poll leases (lease_redis), the
// kick also reaches the instance that polls the device.
func (c *Client) Kick() {
	c.kickLocal()
	c.kickMu.Lock()
	relay := c.relay
	c.kickMu.Unlock()
	if relay != nil {
		relay()
	}
}

// kickLocal kicks the pollers of this instance only.
func (c *Client) kickLocal() {
	c.kickMu.Lock()
	defer c.kickMu.Unlock()
	close(c.kickCh)
	c.kickCh = make(chan struct{})
}

// setRelay makes Kick call relay too.
func (c *Client) setRelay(relay func()) {
	c.kickMu.Lock()
	defer c.kickMu.Unlock()
	c.relay = relay
}

// Kicked returns a channel that is closed by the next Kick. Pollers take
// it before they poll and wait on it with their timer, so a Kick during a
// poll is not lost.
func (c *Client) Kicked() <-chan struct{} {
	c.kickMu.Lock()
	defer c.kickMu.Unlock()
	return c.kickCh
}

// Close closes idle connections and forgets the device's metric series.
// The engine calls it when the pipeline stops; requests still running
// finish normally.
func (c *Client) Close(context.Context) error {
	c.transport.CloseIdleConnections()
	c.metrics.forget()
	return nil
}

// ChannelsOptions select what GET /channels includes.
type ChannelsOptions struct {
	// Publishers includes each channel's publishers (id, type, name).
	Publishers bool
	// Status includes each publisher's status; it implies Publishers.
	Status bool
	// Encoders includes each channel's configured encoders.
	Encoders bool
	// IDs limits the answer to these channels; nil means all.
	IDs []string
}

func (o ChannelsOptions) query() string {
	var q []string
	if o.Publishers || o.Status {
		q = append(q, "publishers=true")
	}
	if o.Status {
		q = append(q, "publishers-status=true")
	}
	if o.Encoders {
		q = append(q, "encoders=true")
	}
	if len(o.IDs) > 0 {
		ids := make([]string, len(o.IDs))
		for i, id := range o.IDs {
			ids[i] = url.QueryEscape(id)
		}
		q = append(q, "ids="+strings.Join(ids, ","))
	}
	return strings.Join(q, "&")
}

// Channels returns the device's channels (GET /channels), one request
// whatever the number of channels.
func (c *Client) Channels(ctx context.Context, o ChannelsOptions) ([]Channel, error) {
	var out []Channel
	if err := c.do(ctx, http.MethodGet, "/channels", "/channels", o.query(), &out); err != nil {
		return nil, err
	}
	return out, nil
}

// SystemStatus returns the device's health (GET /system/status).
func (c *Client) SystemStatus(ctx context.Context) (SystemStatus, error) {
	var out SystemStatus
	err := c.do(ctx, http.MethodGet, "/system/status", "/system/status", "", &out)
	return out, err
}

// Ident returns the device's identity (GET /system/ident).
func (c *Client) Ident(ctx context.Context) (Ident, error) {
	var out Ident
	err := c.do(ctx, http.MethodGet, "/system/ident", "/system/ident", "", &out)
	return out, err
}

// Firmware returns the device's firmware details (GET /system/firmware).
func (c *Client) Firmware(ctx context.Context) (Firmware, error) {
	var out Firmware
	err := c.do(ctx, http.MethodGet, "/system/firmware", "/system/firmware", "", &out)
	return out, err
}

// StartPublishers starts every publisher of a channel. The device starts
// them asynchronously: the pollers, kicked, report the outcome.
func (c *Client) StartPublishers(ctx context.Context, channel string) error {
	return c.control(ctx, channel, "", "start")
}

// StopPublishers stops every publisher of a channel.
func (c *Client) StopPublishers(ctx context.Context, channel string) error {
	return c.control(ctx, channel, "", "stop")
}

// StartPublisher starts one publisher of a channel. The device starts it
// asynchronously: the pollers, kicked, report the outcome.
func (c *Client) StartPublisher(ctx context.Context, channel, publisher string) error {
	return c.control(ctx, channel, publisher, "start")
}

// StopPublisher stops one publisher of a channel.
func (c *Client) StopPublisher(ctx context.Context, channel, publisher string) error {
	return c.control(ctx, channel, publisher, "stop")
}

func (c *Client) control(ctx context.Context, channel, publisher, action string) error {
	if channel == "" {
		return fmt.Errorf("controlling publishers: %w", errors.New("empty channel id"))
	}
	route := "/channels/{cid}/publishers/control/" + action
	path := "/channels/" + url.PathEscape(channel) + "/publishers/control/" + action
	if publisher != "" {
		route = "/channels/{cid}/publishers/{pid}/control/" + action
		path = "/channels/" + url.PathEscape(channel) + "/publishers/" + url.PathEscape(publisher) + "/control/" + action
	}
	if err := c.do(ctx, http.MethodPost, route, path, "", nil); err != nil {
		return err
	}
	c.Kick()
	return nil
}

// envelope is the wrapper of every answer: {"status":"ok","result":...}
// or {"status":"notfound","message":"..."}.
type envelope struct {
	Status  string          `json:"status"`
	Message string          `json:"message"`
	Result  json.RawMessage `json:"result"`
}

// do makes one request and decodes the result of its envelope into out
// (unless out is nil). route labels the metrics; path is sent.
func (c *Client) do(ctx context.Context, method, route, path, query string, out any) error {
	waitStart := time.Now()
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s %s: waiting for a request slot: %w", method, path, ctx.Err())
	}
	defer func() { <-c.slots }()
	c.metrics.wait.Observe(time.Since(waitStart).Seconds())

	code, header, body, err := c.roundTrip(ctx, method, route, path, query)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		return c.fail(route, err)
	}
	if err := decode(method, path, code, header, body, out); err != nil {
		return c.fail(route, err)
	}
	return nil
}

// roundTrip sends a request and reads the whole answer, bounded by the
// timeout and MaxBodySize. It counts the request.
func (c *Client) roundTrip(ctx context.Context, method, route, path, query string) (int, http.Header, []byte, error) {
	reqCtx, cancel := context.WithTimeoutCause(ctx, c.timeout, errTimeout)
	defer cancel()
	u := c.base + path
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(reqCtx, method, u, nil)
	if err != nil {
		return 0, nil, nil, &Error{Method: method, Path: path, Kind: ErrBadResponse, Reason: ReasonBadResponse,
			Message: "building request: " + err.Error(), Err: err}
	}
	req.SetBasicAuth(c.username, c.password)
	req.Header.Set("Accept", "application/json")

	c.metrics.inFlight.Inc()
	start := time.Now()
	code, header, body, err := c.send(req)
	c.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	c.metrics.inFlight.Dec()

	label := strconv.Itoa(code)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		label = "canceled"
	case errors.Is(err, errBodyTooLarge):
		err = badResponse(method, path, code, fmt.Sprintf("body larger than %d MiB", MaxBodySize>>20), nil)
	default:
		if code == 0 {
			label = "error" // no answer at all
		}
		err = c.transportError(reqCtx, method, path, err)
	}
	c.metrics.requests.WithLabelValues(route, label).Inc()
	return code, header, body, err
}

// errBodyTooLarge reports a body over MaxBodySize.
var errBodyTooLarge = errors.New("body too large")

// send sends req and reads its whole answer; an error after the status
// line was read comes with the status code.
func (c *Client) send(req *http.Request) (int, http.Header, []byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodySize+1))
	switch {
	case err != nil:
		return resp.StatusCode, resp.Header, nil, err
	case len(body) > MaxBodySize:
		return resp.StatusCode, resp.Header, nil, errBodyTooLarge
	}
	return resp.StatusCode, resp.Header, body, nil
}

// fail counts a failed request and returns its error.
func (c *Client) fail(route string, err error) error {
	reason := ReasonOf(err)
	if reason == "" {
		reason = "other"
	}
	c.metrics.errors.WithLabelValues(route, reason).Inc()
	return err
}

// decode checks an answer and decodes its result into out.
func decode(method, path string, code int, header http.Header, body []byte, out any) error {
	trimmed := bytes.TrimSpace(body)
	env, envErr := parseEnvelope(trimmed)
	if code < 200 || code > 299 {
		if envErr != nil {
			env = nil
		}
		e := statusError(method, path, code, env)
		if e.Reason == ReasonRedirect {
			if loc := header.Get("Location"); loc != "" {
				e.Message += " to " + loc + ": use that address in the device's configuration"
			}
		}
		return e
	}
	if envErr != nil {
		return badResponse(method, path, code, envErr.Error(), errors.Unwrap(envErr))
	}
	switch {
	case strings.EqualFold(env.Status, "ok"):
	case env.Status == "":
		return badResponse(method, path, code, "JSON without a status", nil)
	case strings.EqualFold(env.Status, "notfound"):
		return &Error{Method: method, Path: path, StatusCode: code, APIStatus: env.Status,
			Kind: ErrNotFound, Reason: ReasonNotFound, Message: fmt.Sprintf("not found: device says %q", env.Message)}
	default:
		return &Error{Method: method, Path: path, StatusCode: code, APIStatus: env.Status,
			Kind: ErrRejected, Reason: ReasonRejected, Message: fmt.Sprintf("device answered %q: %s", env.Status, env.Message)}
	}
	if out == nil {
		return nil
	}
	if len(env.Result) == 0 || string(env.Result) == "null" {
		return badResponse(method, path, code, "no result in the answer", nil)
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return badResponse(method, path, code, "decoding result: "+err.Error(), err)
	}
	return nil
}

// parseEnvelope decodes the envelope, describing why a body is not one.
func parseEnvelope(body []byte) (*envelope, error) {
	switch {
	case len(body) == 0:
		return nil, errors.New("empty body")
	case body[0] == '<':
		return nil, errors.New("HTML page where JSON was expected")
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok && se.Offset >= int64(len(body)) {
			return nil, fmt.Errorf("truncated JSON: %w", err)
		}
		if _, ok := errors.AsType[*json.SyntaxError](err); ok {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
		return nil, fmt.Errorf("JSON that is not the API's envelope: %w", err)
	}
	return &env, nil
}
