package pearltest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server wraps a Device in a real listener, like httptest.Server, and can
// refuse connections as a rebooting device does. Its methods are safe for
// concurrent use.
type Server struct {
	// URL is the base URL, "http://127.0.0.1:PORT" or "https://...",
	// without /api/v2.0. It does not change when the server refuses and
	// listens again.
	URL    string
	Device *Device

	listenAddr string // the address bound; port fixed after the first listen
	host       string // host:port in URL
	tlsConfig  *tls.Config
	cert       *x509.Certificate

	mu      sync.Mutex
	gen     *generation // nil while refusing or closed
	closed  bool
	refused bool
	client  *http.Client
}

// NewServer starts a Server for d on 127.0.0.1 and a random port. It
// panics if it cannot listen, as httptest.NewServer does.
func NewServer(d *Device) *Server {
	s, err := newServer(d, "127.0.0.1:0", false)
	if err != nil {
		panic(fmt.Sprintf("pearltest: %v", err))
	}
	return s
}

// NewTLSServer starts an HTTPS Server for d on 127.0.0.1 and a random port,
// with a self-signed certificate (see Certificate and Client). It panics if
// it cannot listen.
func NewTLSServer(d *Device) *Server {
	s, err := newServer(d, "127.0.0.1:0", true)
	if err != nil {
		panic(fmt.Sprintf("pearltest: %v", err))
	}
	return s
}

// NewServerAt starts a Server for d on addr ("127.0.0.1:8400"; port 0
// picks a free port).
func NewServerAt(d *Device, addr string) (*Server, error) {
	return newServer(d, addr, false)
}

// NewTLSServerAt starts an HTTPS Server for d on addr with a self-signed
// certificate.
func NewTLSServerAt(d *Device, addr string) (*Server, error) {
	return newServer(d, addr, true)
}

func newServer(d *Device, addr string, useTLS bool) (*Server, error) {
	s := &Server{Device: d, listenAddr: addr}
	scheme := "http"
	if useTLS {
		scheme = "https"
		host, _, _ := net.SplitHostPort(addr)
		cert, leaf, err := selfSignedCert(host)
		if err != nil {
			return nil, fmt.Errorf("creating certificate: %w", err)
		}
		s.cert = leaf
		s.tlsConfig = &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"http/1.1"},
		}
	}
	g, bound, err := s.listen(addr)
	if err != nil {
		return nil, err
	}
	s.gen = g
	s.listenAddr = bound.String()
	s.host = bound.String()
	if tcp := bound.(*net.TCPAddr); tcp.IP.IsUnspecified() {
		// Listening on every address: name the loopback one in URL.
		loop := "127.0.0.1"
		if host, _, _ := net.SplitHostPort(addr); strings.Contains(host, ":") {
			loop = "::1"
		}
		s.host = net.JoinHostPort(loop, strconv.Itoa(tcp.Port))
	}
	s.URL = scheme + "://" + s.host
	return s, nil
}

// Host returns the host and port of URL, "127.0.0.1:PORT".
func (s *Server) Host() string { return s.host }

// Certificate returns the self-signed certificate of a TLS server, or nil.
func (s *Server) Certificate() *x509.Certificate { return s.cert }

// Client returns an HTTP client for the server: for a TLS server it trusts
// the server's certificate. Close closes its idle connections.
func (s *Server) Client() *http.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		tr := &http.Transport{}
		if s.cert != nil {
			pool := x509.NewCertPool()
			pool.AddCert(s.cert)
			tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		}
		s.client = &http.Client{Transport: tr}
	}
	return s.client
}

// SetRefused with true closes the listener and every open connection, so
// that connections are refused, as while a device reboots; with false it
// listens again on the same address, keeping URL. It panics if the address
// cannot be bound again within a second (another process took the port).
// It does nothing once the server is closed.
func (s *Server) SetRefused(refused bool) {
	if err := s.setRefused(refused); err != nil {
		panic(fmt.Sprintf("pearltest: %v", err))
	}
}

func (s *Server) setRefused(refused bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.refused == refused {
		return nil
	}
	if refused {
		s.gen.stop()
		s.gen, s.refused = nil, true
		return nil
	}
	var err error
	for range 20 {
		var g *generation
		if g, _, err = s.listen(s.listenAddr); err == nil {
			s.gen, s.refused = g, false
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("listening again: %w", err)
}

// Refused reports whether the server is refusing connections.
func (s *Server) Refused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Close stops the server: it closes the listener and open connections,
// ends requests in progress (their contexts are canceled) and waits for
// every goroutine of the server to finish. It is safe to call twice.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.gen != nil {
		s.gen.stop()
		s.gen = nil
	}
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
}

// generation is one listening period of a Server.
type generation struct {
	device *Device
	srv    *http.Server
	cancel context.CancelFunc
	served chan struct{}

	mu       sync.Mutex
	stopping bool
	handlers sync.WaitGroup
}

func (s *Server) listen(addr string) (*generation, net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	bound := ln.Addr()
	if s.tlsConfig != nil {
		ln = tls.NewListener(ln, s.tlsConfig)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &generation{device: s.Device, cancel: cancel, served: make(chan struct{})}
	g.srv = &http.Server{
		Handler:           g,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		defer close(g.served)
		// Serve returns when stop closes the server; there is nothing
		// else that can make it fail once the listener is bound.
		_ = g.srv.Serve(ln)
	}()
	return g, bound, nil
}

func (g *generation) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	if g.stopping {
		g.mu.Unlock()
		panic(http.ErrAbortHandler) // the connection is being closed
	}
	g.handlers.Add(1)
	g.mu.Unlock()
	defer g.handlers.Done()
	g.device.ServeHTTP(w, r)
	g.mu.Lock()
	stopping := g.stopping
	g.mu.Unlock()
	if stopping {
		// The request was cut short by stop: drop the connection rather
		// than send the empty answer the handler left.
		panic(http.ErrAbortHandler)
	}
}

// stop closes the listener and connections, cancels requests in progress
// and waits for the serving goroutine and handlers to return.
func (g *generation) stop() {
	g.mu.Lock()
	g.stopping = true
	g.mu.Unlock()
	_ = g.srv.Close()
	g.cancel()
	<-g.served
	g.handlers.Wait()
}

// selfSignedCert returns a self-signed ECDSA certificate for localhost,
// the loopback addresses and host when it is an IP address.
func selfSignedCert(host string) (tls.Certificate, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("generating serial: %w", err)
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		ips = append(ips, ip)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Epiphan Video (pearltest)"}, CommonName: "pearl.local"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           ips,
		DNSNames:              []string{"localhost", "pearl.local"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("signing certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("parsing certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf, nil
}
