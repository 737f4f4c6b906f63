package websocket

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
)

// ServeHTTP upgrades a request to a WebSocket connection. A refused origin
// gets 403 before the upgrade; a refused token or a connection over the
// per-address limit gets the upgrade and then a close frame with 1008 and
// the reason, so that browsers can show it.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "WebSocket upgrade required", http.StatusUpgradeRequired)
		return
	}
	if !h.originAllowed(r.Header.Get("Origin")) {
		h.metrics.connTotal.WithLabelValues(resultOrigin).Inc()
		h.log.Debug("refusing websocket origin", "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		http.Error(w, "Origin not allowed", http.StatusForbidden)
		return
	}

	claims, authErr := h.verifier.Authenticate(r)
	if authErr == nil && !claims.CanRead() {
		authErr = fmt.Errorf("%w: the token grants no read permission", auth.ErrForbidden)
	}
	ip := h.clientIP(r)
	admitted := false
	if authErr == nil {
		admitted = h.admit(ip)
	}
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// gorilla has answered with an HTTP error.
		if admitted {
			h.releaseIP(ip)
		}
		h.metrics.connTotal.WithLabelValues(resultFailed).Inc()
		return
	}
	switch {
	case authErr != nil:
		result := resultUnauthenticated
		if errors.Is(authErr, auth.ErrForbidden) {
			result = resultForbidden
		}
		h.metrics.connTotal.WithLabelValues(result).Inc()
		h.log.Debug("refusing websocket client", "remote", r.RemoteAddr, "err", authErr)
		h.refuse(conn, websocket.ClosePolicyViolation, auth.Reason(authErr))
	case !admitted:
		h.metrics.connTotal.WithLabelValues(resultLimit).Inc()
		h.log.Debug("refusing websocket client: connection limit", "ip", ip)
		h.refuse(conn, websocket.ClosePolicyViolation, reasonLimit)
	default:
		h.start(conn, claims, ip, r.URL.Query().Get("batch"))
	}
}

// start registers a client, queues its `connected` message and starts its
// reader and writer.
func (h *Hub) start(conn *websocket.Conn, claims *auth.Claims, ip, batch string) {
	c := &client{
		h:        h,
		conn:     conn,
		nc:       conn.NetConn(),
		id:       rand.Text(),
		ip:       ip,
		claims:   claims,
		batch:    batch == "1" || batch == "true",
		readDone: make(chan struct{}),
		subs:     map[string]*subscription{},
	}
	c.push(h.connectedFrame(c))

	h.clientsMu.Lock()
	if h.closed {
		h.clientsMu.Unlock()
		h.releaseIP(ip)
		h.metrics.connTotal.WithLabelValues(resultShutdown).Inc()
		h.refuse(conn, websocket.CloseGoingAway, reasonShutdown)
		return
	}
	h.clients[c] = struct{}{}
	c.slot = h.nextSlot
	h.nextSlot = (h.nextSlot + 1) % pingSlots
	// One count for the reader, one for the connection's write side,
	// released when the connection ends (client.finish).
	h.wg.Add(2)
	h.startPinger()
	h.clientsMu.Unlock()

	h.metrics.connTotal.WithLabelValues(resultAccepted).Inc()
	h.metrics.connections.Inc()
	h.log.Debug("websocket client connected", "client", c.id, "sub", claims.Subject, "ip", ip)
	c.startReading()
	c.signal() // sends `connected`
}

func (h *Hub) connectedFrame(c *client) *frame {
	perms, _ := json.Marshal(c.claims.Permissions)
	name := c.claims.Name
	if name == "" {
		name = c.claims.Subject
	}
	return jsonFrame(connectedMsg{
		Type:     "connected",
		ClientID: c.id,
		User:     userInfo{ID: c.claims.Subject, Name: name, Email: c.claims.Email, Permissions: perms},
		Capabilities: capabilities{
			DataTypes:        h.dataTypes(),
			MaxSubscriptions: h.MaxSubscriptions,
			MaxMessageSize:   h.MaxMessageSize,
			Version:          engine.Version,
			Epoch:            h.epoch,
		},
	})
}

// release forgets a client whose reader has stopped.
func (h *Hub) release(c *client) {
	h.clientsMu.Lock()
	delete(h.clients, c)
	h.clientsMu.Unlock()
	h.releaseIP(c.ip)
	h.metrics.connections.Dec()
	h.log.Debug("websocket client disconnected", "client", c.id)
}

// refuse closes a freshly upgraded connection with a close frame, waiting
// briefly for the client's answer so that the frame is not lost to a reset.
func (h *Hub) refuse(conn *websocket.Conn, code int, reason string) {
	h.clientsMu.Lock()
	tracked := !h.closed
	if tracked {
		h.wg.Add(1)
	}
	h.clientsMu.Unlock()
	if tracked {
		defer h.wg.Done()
	}
	defer conn.Close()

	nc := conn.NetConn()
	deadline := time.Now().Add(closeGrace)
	_ = nc.SetWriteDeadline(deadline)
	if _, err := nc.Write(closeFrame(code, reason).wire); err != nil || !tracked {
		return
	}
	conn.SetCloseHandler(func(int, string) error { return nil })
	conn.SetReadLimit(int64(h.MaxMessageSize))
	_ = conn.SetReadDeadline(deadline)
	for {
		if _, _, err := conn.NextReader(); err != nil {
			return
		}
	}
}

// admit counts a connection from ip, unless ip is at its limit.
func (h *Hub) admit(ip string) bool {
	h.clientsMu.Lock()
	defer h.clientsMu.Unlock()
	if h.MaxConnectionsPerIP > 0 && h.perIP[ip] >= h.MaxConnectionsPerIP {
		return false
	}
	h.perIP[ip]++
	return true
}

func (h *Hub) releaseIP(ip string) {
	h.clientsMu.Lock()
	defer h.clientsMu.Unlock()
	if h.perIP[ip]--; h.perIP[ip] <= 0 {
		delete(h.perIP, ip)
	}
}

// originAllowed checks the Origin header against AllowedOrigins.
func (h *Hub) originAllowed(origin string) bool {
	if len(h.AllowedOrigins) == 0 || origin == "" {
		return true
	}
	origin = strings.ToLower(origin)
	for _, p := range h.AllowedOrigins {
		if p == "*" {
			return true
		}
		if ok, _ := path.Match(strings.ToLower(p), origin); ok {
			return true
		}
	}
	return false
}

// clientIP returns the address a connection counts against. Behind a
// trusted proxy it is the nearest untrusted address of X-Forwarded-For,
// or X-Real-IP.
func (h *Hub) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !h.trusted(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if a = a.Unmap(); !h.trusted(a) {
			return a.String()
		}
	}
	if a, err := netip.ParseAddr(strings.TrimSpace(r.Header.Get("X-Real-IP"))); err == nil {
		return a.Unmap().String()
	}
	return peer.String()
}

func (h *Hub) trusted(a netip.Addr) bool {
	for _, p := range h.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
