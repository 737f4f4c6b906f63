package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestAcceptKey(t *testing.T) {
	// RFC 6455, section 1.3.
	if got := acceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("acceptKey = %s", got)
	}
}

func TestClientAddr(t *testing.T) {
	const perIP = 20
	seen := map[netip.Addr]int{}
	for i := range 100000 {
		a := clientAddr(i, perIP)
		b := a.As4()
		if b[0] != 127 || a == netip.MustParseAddr("127.0.0.1") || b[3] == 0 || b[3] == 255 {
			t.Fatalf("client %d gets %s", i, a)
		}
		seen[a]++
	}
	for a, n := range seen {
		if n != perIP {
			t.Fatalf("%s serves %d clients, want %d", a, n, perIP)
		}
	}
	if clientAddr(0, perIP) != clientAddr(perIP-1, perIP) || clientAddr(0, perIP) == clientAddr(perIP, perIP) {
		t.Fatal("clients are not grouped by perIP")
	}
}

func TestPublishStamp(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64
		ok   bool
	}{
		{"stamp", `{"type":"data_update","data":{"t":1795643948840867755,"i":3}}`, 1795643948840867755, true},
		{"short", `{"data":{"t":42}}`, 42, true},
		{"no stamp", `{"type":"data_update","data":{"i":3}}`, 0, false},
		{"not a number", `{"data":{"t":"x"}}`, 0, false},
		{"overflow", `{"data":{"t":9999999999999999999}}`, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := publishStamp([]byte(tt.in))
			if ok != tt.ok || (ok && got != tt.want) {
				t.Fatalf("publishStamp = %d, %v; want %d, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestFrameType(t *testing.T) {
	for in, want := range map[string]string{
		`{"type":"data_update","x":1}`: "data_update",
		`{"type":"connected"}`:         "connected",
		`{"x":1}`:                      "",
		`{"type":"unterminated`:        "",
	} {
		if got := frameType([]byte(in)); got != want {
			t.Errorf("frameType(%s) = %q, want %q", in, got, want)
		}
	}
	if !isDataUpdate([]byte(`{"type":"data_update"}`)) || isDataUpdate([]byte(`{"type":"cached_data"}`)) {
		t.Fatal("isDataUpdate")
	}
	if got := (subKey{DataType: "publisher_status", Device: "d", Channel: "1"}).message(); got != `{"type":"subscribe","dataType":"publisher_status","device":"d","channel":"1"}` {
		t.Fatalf("subscribe message %s", got)
	}
}

// TestWSClient runs the bench's client against gorilla's server: text,
// fragmented and large frames, a ping it must answer, a masked message
// the server must accept, and a close with code and reason.
func TestWSClient(t *testing.T) {
	serverErr := make(chan error, 1)
	up := websocket.Upgrader{WriteBufferSize: 256}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		serverErr <- func() error {
			if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"connected"}`)); err != nil {
				return err
			}
			// 1000 bytes through a 256-byte buffer: several fragments.
			if err := c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("a", 1000))); err != nil {
				return err
			}
			if err := c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("b", 70000))); err != nil {
				return err
			}
			pong := make(chan string, 1)
			c.SetPongHandler(func(s string) error { pong <- s; return nil })
			if err := c.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second)); err != nil {
				return err
			}
			_, msg, err := c.ReadMessage() // the pong is handled on the way
			if err != nil {
				return err
			}
			if string(msg) != "hello" {
				return errors.New("server read " + string(msg))
			}
			select {
			case p := <-pong:
				if p != "hi" {
					return errors.New("pong " + p)
				}
			default:
				return errors.New("no pong before the client's message")
			}
			return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "go away"), time.Now().Add(time.Second))
		}()
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()

	if _, err := dialWS(ctx, dialOptions{Addr: addr, Token: "bad", Timeout: 2 * time.Second}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("dial with a refused token: %v", err)
	}
	ws, err := dialWS(ctx, dialOptions{Addr: addr, Token: "tok", Local: netip.MustParseAddr("127.10.0.1"), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.close()
	_ = ws.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if got := ws.nc.LocalAddr().String(); !strings.HasPrefix(got, "127.10.0.1:") {
		t.Fatalf("local address %s, want 127.10.0.1", got)
	}
	for _, want := range []string{`{"type":"connected"}`, strings.Repeat("a", 1000), strings.Repeat("b", 70000)} {
		op, p, err := ws.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		if op != opText || string(p) != want {
			t.Fatalf("frame op %d of %d bytes, want text of %d", op, len(p), len(want))
		}
	}
	// The ping comes next: readFrame answers it and waits for more.
	_ = ws.nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, _, err := ws.readFrame(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the ping: %v, want a timeout", err)
	}
	_ = ws.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := ws.writeText("hello"); err != nil {
		t.Fatal(err)
	}
	_, _, err = ws.readFrame()
	if err := <-serverErr; err != nil {
		t.Fatalf("server: %v", err)
	}
	if !errors.Is(err, errClosed) || ws.closeCode != 1008 || ws.closeReason != "go away" {
		t.Fatalf("after close: %v, code %d reason %q", err, ws.closeCode, ws.closeReason)
	}
}
