package pearltest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestServer(t *testing.T) {
	s := NewServer(NewDevice(Options{Password: "pw", Name: "Pearl A"}))
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || s.URL != "http://"+s.Host() {
		t.Fatalf("URL = %q, Host = %q", s.URL, s.Host())
	}
	c := testClient(t, nil)
	resp, body, err := apiGet(c, s.URL+"/api/v2.0/system/ident", "admin", "pw")
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil || resp.StatusCode != 200 || !strings.Contains(string(env.Result), "Pearl A") {
		t.Fatalf("ident: %d %s (%v)", resp.StatusCode, body, err)
	}
	resp, _, err = apiGet(c, s.URL+"/api/v2.0/system/ident", "admin", "wrong")
	if err != nil || resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("wrong password: %v %v", resp, err)
	}
	if s.Device.Requests("/api/v2.0/system/ident") != 2 {
		t.Fatalf("requests = %d", s.Device.Requests("/api/v2.0/system/ident"))
	}
}

func TestServerRefused(t *testing.T) {
	s := NewServer(NewDevice(Options{}))
	defer s.Close()
	url := s.URL + "/api/v2.0/system/status"
	c := testClient(t, nil)
	if resp, _, err := apiGet(c, url, "admin", ""); err != nil || resp.StatusCode != 200 {
		t.Fatalf("before refusing: %v %v", resp, err)
	}

	s.SetRefused(true)
	if !s.Refused() {
		t.Fatal("Refused() = false")
	}
	s.SetRefused(true) // idempotent
	_, _, err := apiGet(testClient(t, nil), url, "admin", "")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("while refused: err = %v, want connection refused", err)
	}
	// The kept-alive connection of the first client was closed too.
	if _, _, err := apiGet(c, url, "admin", ""); err == nil {
		t.Fatal("kept-alive connection still answered while refused")
	}

	s.SetRefused(false)
	if resp, _, err := apiGet(c, url, "admin", ""); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after listening again on the same URL: %v %v", resp, err)
	}
}

func TestServerRefusedCutsRequestsInFlight(t *testing.T) {
	d := NewDevice(Options{})
	s := NewServer(d)
	defer s.Close()
	d.SetFault(FaultSlow)
	d.SetFaultDelay(10 * time.Second)
	errc := make(chan error, 1)
	go func() {
		_, _, err := apiGet(testClient(t, nil), s.URL+"/api/v2.0/channels", "admin", "")
		errc <- err
	}()
	waitFor(t, func() bool { return d.TotalRequests() == 1 })
	start := time.Now()
	s.SetRefused(true)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("SetRefused took %v with a slow request in flight", took)
	}
	if err := <-errc; err == nil {
		t.Fatal("request in flight during a reboot succeeded")
	}
}

func TestServerCloseEndsSlowRequests(t *testing.T) {
	d := NewDevice(Options{})
	s := NewServer(d)
	d.SetFault(FaultSlow)
	d.SetFaultDelay(10 * time.Second)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, _, err := apiGet(testClient(t, nil), s.URL+"/api/v2.0/channels", "admin", ""); err == nil {
				t.Error("request succeeded across Close")
			}
		})
	}
	waitFor(t, func() bool { return d.TotalRequests() == 3 })
	if d.MaxInFlight() != 3 {
		t.Errorf("MaxInFlight = %d, want 3", d.MaxInFlight())
	}
	start := time.Now()
	s.Close()
	s.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v", took)
	}
	wg.Wait()
	s.SetRefused(false) // no-op after Close
	if _, _, err := apiGet(testClient(t, nil), s.URL+"/api/v2.0/channels", "admin", ""); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("after Close: %v, want connection refused", err)
	}
}

func TestTLSServer(t *testing.T) {
	s := NewTLSServer(NewDevice(Options{}))
	defer s.Close()
	if !strings.HasPrefix(s.URL, "https://127.0.0.1:") || s.Certificate() == nil {
		t.Fatalf("URL = %q, certificate %v", s.URL, s.Certificate())
	}
	url := s.URL + "/api/v2.0/system/firmware"

	_, _, err := apiGet(testClient(t, nil), url, "admin", "")
	var unknownCA x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknownCA) {
		t.Fatalf("verifying client: err = %v, want an unknown authority error", err)
	}

	insecure := testClient(t, &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}})
	resp, body, err := apiGet(insecure, url, "admin", "")
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), `"version":"4.24.1"`) {
		t.Fatalf("InsecureSkipVerify: %v %s %v", resp, body, err)
	}
	if resp.TLS == nil {
		t.Fatal("answer not over TLS")
	}

	resp, _, err = apiGet(s.Client(), url, "admin", "")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("Client(): %v %v", resp, err)
	}

	s.SetRefused(true)
	s.SetRefused(false)
	if resp, _, err = apiGet(insecure, url, "admin", ""); err != nil || resp.StatusCode != 200 {
		t.Fatalf("TLS after listening again: %v %v", resp, err)
	}
}

func TestNewServerAt(t *testing.T) {
	base := freePortRange(t, 1)
	addr := fmt.Sprintf("127.0.0.1:%d", base)
	s, err := NewServerAt(NewDevice(Options{}), addr)
	if err != nil {
		t.Fatal(err)
	}
	if s.Host() != addr || s.URL != "http://"+addr {
		t.Errorf("Host = %q, URL = %q", s.Host(), s.URL)
	}
	if _, err := NewServerAt(NewDevice(Options{}), addr); err == nil {
		t.Error("second server on the same address succeeded")
	}
	s.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port not freed by Close: %v", err)
	}
	ln.Close()

	s, err = NewServerAt(NewDevice(Options{}), "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Errorf("URL for an unspecified address = %q, want a loopback URL", s.URL)
	}
	if resp, _, err := apiGet(testClient(t, nil), s.URL+"/api/v2.0/system/status", "admin", ""); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v %v", resp, err)
	}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
