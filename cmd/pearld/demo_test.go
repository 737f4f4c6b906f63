package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// freePorts returns n distinct ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// freeRange returns the first of n consecutive free ports.
func freeRange(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		base := 20000 + (try*97+int(time.Now().UnixNano()%10000))%40000
		var ls []net.Listener
		ok := true
		for i := range n {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// TestDemo runs the built binary as `make demo` does and follows the
// printed instructions: connect with the token, subscribe to a demo device
// and see subscribed, cached_data and then live data_update frames.
func TestDemo(t *testing.T) {
	bin := pearldBinary(t)
	ports := freePorts(t, 2)
	sim := freeRange(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo",
		"--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--status-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--sim-port", strconv.Itoa(sim), "--tick", "200ms", "--seed", "7", "--log-level", "warn")
	cmd.Dir = t.TempDir() // no pipelines/ here: the built-in demo pipeline is used
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()

	// The printed URL carries the token.
	urlRE := regexp.MustCompile(`ws://\S+\?token=(\S+)`)
	sc := bufio.NewScanner(stdout)
	var url string
	for sc.Scan() {
		if m := urlRE.FindStringSubmatch(sc.Text()); m != nil {
			url = m[0]
			break
		}
	}
	if url == "" {
		t.Fatal("pearld demo printed no WebSocket URL with a token")
	}
	go func() {
		for sc.Scan() {
		}
	}()

	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dialing the printed URL: %v", err)
	}
	resp.Body.Close()
	defer conn.Close()
	c := &wsClient{t: t, conn: conn}
	c.expect("connected", 5*time.Second)
	// The first polls may not have happened yet: wait for a cached state.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.send(map[string]any{"type": "subscribe", "dataType": "publisher_status", "device": "studio-a", "channel": "1"})
		c.expect("subscribed", 5*time.Second)
		if m := c.next(5 * time.Second); m["type"] == "cached_data" {
			break
		} else if m["type"] != "no_cached_data" || time.Now().After(deadline) {
			t.Fatalf("after subscribed: %v", m)
		}
		c.send(map[string]any{"type": "unsubscribe", "dataType": "publisher_status", "device": "studio-a", "channel": "1"})
		// The first poll may land in between: skip its update.
		for c.next(5 * time.Second)["type"] != "unsubscribed" {
		}
		time.Sleep(200 * time.Millisecond)
	}
	for range 2 {
		u := c.expect("data_update", 60*time.Second)
		if u["subscriptionKey"] != "publisher_status:studio-a:1" {
			t.Fatalf("data_update for %v", u["subscriptionKey"])
		}
	}

	// SIGTERM: a clean exit, and the client is told with 1001.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
				t.Errorf("after SIGTERM: %v, want close 1001", err)
			}
			break
		}
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("pearld demo exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("pearld demo did not exit within 15s of SIGTERM")
	}
}
