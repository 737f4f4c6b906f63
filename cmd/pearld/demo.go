package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/pipelines"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

// demoDevices are the device ids of pipelines/demo.toml, in port order.
var demoDevices = []string{"studio-a", "studio-b", "lobby", "chapel"}

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	config := fs.String("config", "pipelines/demo.toml", "demo pipeline file (the built-in copy when the file does not exist)")
	listen := fs.String("listen", ":3446", "address of the WebSocket hub")
	statusAddr := fs.String("status-addr", ":3447", "address of /health, /status and /metrics")
	simPort := fs.Int("sim-port", 8101, "first port of the simulated devices (one port per device)")
	tick := fs.Duration("tick", 2*time.Second, "how often the simulated devices change")
	seed := fs.Int64("seed", 0, "seed of the simulation (0: a new one each run)")
	pluginsDir := fs.String("plugins-dir", "bin/plugins", "directory of plugin binaries")
	var lf logFlags
	lf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	file, cleanup, err := demoPipeline(*config)
	if err != nil {
		return err
	}
	defer cleanup()

	if *seed == 0 {
		*seed = time.Now().UnixNano()
	}
	const password = "demo"
	fleet, err := pearltest.NewFleet(pearltest.FleetOptions{
		N: len(demoDevices), Listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(*simPort)),
		Password: password, Seed: *seed, Tick: *tick, Logger: log.With("component", "simulator"),
	})
	if err != nil {
		return fmt.Errorf("starting the simulated fleet: %w", err)
	}
	defer fleet.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = fleet.Run(ctx) }()

	secret, ok := os.LookupEnv("JWT_SECRET")
	if !ok || secret == "" {
		secret = randomSecret()
	}
	vars := map[string]string{
		"JWT_SECRET":          secret,
		"PEARLD_DEMO_LISTEN":  *listen,
		"PEARL_DEMO_PASSWORD": password,
	}
	for i, s := range fleet.Servers() {
		vars["PEARL_DEMO_"+envName(demoDevices[i])] = s.Host()
	}
	lookup := func(k string) (string, bool) {
		if v, ok := vars[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	}
	token, err := mintToken(secret, "demo", "Demo operator", "", []string{"realtime_data", "publisher_control", "admin"}, nil, 24*time.Hour)
	if err != nil {
		return err
	}
	e := engine.New(engine.Options{Logger: log, StatusAddr: *statusAddr, PluginsDir: *pluginsDir, LookupEnv: lookup, IsAdmin: adminCheck(secret)})
	return serve(e, log, runOptions{files: func() ([]string, error) { return []string{file}, nil }, grace: 10 * time.Second, statusAddr: *statusAddr, ready: func() {
		hub := hostURL(*listen)
		fmt.Fprintf(stdout, `
pearld demo is running: %d simulated Pearl encoders (%s).

  Dashboard   http://%s/#token=%s
  WebSocket   ws://%s/   (also /ws and /ws/realtime)
  Status      http://%s/status   /health   /metrics
  Token       %s

Connect with the token (Authorization: Bearer, X-Auth-Token or ?token=), e.g.
  ws://%s/?token=%s
then send
  {"type":"subscribe","dataType":"publisher_status","device":"%s","channel":"1"}

Stop with Ctrl-C.
`, len(demoDevices), strings.Join(demoDevices, ", "), hostURL(*statusAddr), token, hub, hostURL(*statusAddr), token, hub, token, demoDevices[0])
	}})
}

// demoPipeline returns the demo pipeline's path: the file when it exists,
// else the built-in copy written to a temporary directory.
func demoPipeline(path string) (string, func(), error) {
	if _, err := os.Stat(path); err == nil {
		return path, func() {}, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", nil, err
	}
	src, err := pipelines.Files.ReadFile("demo.toml")
	if err != nil {
		return "", nil, fmt.Errorf("reading the built-in demo pipeline: %w", err)
	}
	dir, err := os.MkdirTemp("", "pearld-demo-")
	if err != nil {
		return "", nil, fmt.Errorf("writing the demo pipeline: %w", err)
	}
	file := filepath.Join(dir, "demo.toml")
	if err := os.WriteFile(file, src, 0o600); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("writing the demo pipeline: %w", err)
	}
	return file, func() { os.RemoveAll(dir) }, nil
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// envName turns a device id into the upper-case form used in variables.
func envName(id string) string {
	out := make([]byte, 0, len(id))
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z':
			out = append(out, c-'a'+'A')
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			out = append(out, c)
		default:
			out = append(out, '_')
		}
	}
	return string(out)
}

// hostURL turns a listen address into one a browser on this machine can use.
func hostURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
