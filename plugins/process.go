package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/pearld/pearld/sdk"
	pb "github.com/pearld/pearld/sdk/proto"
	"google.golang.org/grpc"
)

const (
	// startTimeout bounds the handshake of a starting plugin.
	startTimeout = 10 * time.Second
	// killGrace is how long a plugin may take to exit after it was asked
	// to; then it is killed.
	killGrace = 2 * time.Second
)

// ErrChecksum is the kind of the error about a plugin binary whose SHA-256
// is not the one the pipeline pins.
var ErrChecksum = errors.New("plugin binary does not match its sha256 pin")

// launchOptions say which binary to start and how.
type launchOptions struct {
	name string // the plugin's name: the binary's file name
	path string // absolute path of the binary
	pin  []byte // SHA-256 the binary must have; nil: none
	log  *slog.Logger
	junk *junkReporter
}

// process is a running plugin process and the client of its Source
// service.
type process struct {
	name   string
	client *plugin.Client
	runner *procRunner
	source pb.SourceClient
	log    *slog.Logger

	killOnce sync.Once
}

// launch starts a plugin and completes the handshake. Cancelling ctx
// aborts a start in progress.
func launch(ctx context.Context, o launchOptions) (*process, error) {
	if err := verifyPin(o.path, o.pin); err != nil {
		return nil, err
	}
	var started atomic.Pointer[procRunner]
	junk := func(line []byte) { o.junk.report("stdout", line) }
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  pb.ProtocolVersion,
			MagicCookieKey:   pb.MagicCookieKey,
			MagicCookieValue: pb.MagicCookieValue,
		},
		Plugins:          plugin.PluginSet{pb.PluginSource: sourceClientPlugin{}},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     startTimeout,
		// The plugin gets only the environment below, not pearld's, which
		// holds secrets such as JWT_SECRET.
		SkipHostEnv: true,
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, _ string) (runner.Runner, error) {
			c := exec.Command(o.path)
			c.Env = append(pluginEnv(o.log), cmd.Env...)
			r := newProcRunner(c, junk)
			started.Store(r)
			return r, nil
		},
		Logger:     newHclogAdapter(o.log),
		SyncStdout: &lineWriter{line: junk},
		SyncStderr: &lineWriter{line: func(b []byte) { o.junk.report("stderr", b) }},
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(pb.MaxMessageSize),
			grpc.MaxCallSendMsgSize(pb.MaxMessageSize),
		)},
	})
	p := &process{name: o.name, client: client, log: o.log}
	stop := context.AfterFunc(ctx, func() {
		if r := started.Load(); r != nil {
			_ = r.Kill(context.Background())
		}
	})
	rpc, err := client.Client()
	stop()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // cancelled as the handshake completed
	}
	pr := started.Load()
	if err == nil {
		p.runner = pr
		var raw any
		raw, err = rpc.Dispense(pb.PluginSource)
		if err == nil {
			p.source = raw.(pb.SourceClient)
		}
	}
	if err != nil {
		msg := err.Error()
		if pr != nil && pr.PID() != 0 {
			if d := pr.death(); d != "still running" {
				msg += " (" + d + ")"
			}
		}
		p.runner = pr
		p.kill()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("starting plugin %s: %w", o.name, ctx.Err())
		}
		return nil, fmt.Errorf("starting plugin %s: %s", o.name, firstLine(msg))
	}
	return p, nil
}

// pluginEnv is the environment of a plugin process: enough to run, the
// log level, and the PEARLD_PLUGIN_* variables of pearld's environment
// (for plugin settings that do not belong in pipeline files).
func pluginEnv(log *slog.Logger) []string {
	env := []string{sdk.EnvLogLevel + "=" + levelName(log)}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == sdk.EnvLogLevel:
		case k == "PATH", k == "HOME", k == "TMPDIR", k == "TZ", k == "LANG", strings.HasPrefix(k, "LC_"),
			k == "GOTRACEBACK", k == "GODEBUG", k == "GOMAXPROCS", k == "GOMEMLIMIT",
			strings.HasPrefix(k, "PEARLD_PLUGIN_"):
			env = append(env, kv)
		}
	}
	return env
}

func firstLine(s string) string {
	first, rest, _ := strings.Cut(s, "\n")
	if strings.HasPrefix(first, "Unrecognized remote plugin message") {
		return first + ": " + strings.TrimSpace(rest)
	}
	return first
}

// verifyPin checks the binary's SHA-256 against pin, if any.
func verifyPin(path string, pin []byte) error {
	if pin == nil {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verifying plugin binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("verifying plugin binary: %w", err)
	}
	if got := h.Sum(nil); string(got) != string(pin) {
		return fmt.Errorf("%w: %s has sha256 %s, the pipeline pins %s (rebuilt or replaced? update the pin only if you trust the new binary)",
			ErrChecksum, path, hex.EncodeToString(got), hex.EncodeToString(pin))
	}
	return nil
}

// PID returns the plugin's process id.
func (p *process) PID() int {
	if p.runner == nil {
		return 0
	}
	return p.runner.PID()
}

// exited is closed when the process exited.
func (p *process) exited() <-chan struct{} { return p.runner.Exited() }

// kill stops the plugin: go-plugin asks it to exit and kills it after 2s,
// but that request blocks while a frozen plugin does not answer, so after
// killGrace the process is killed from here, and kill returns after at
// most about twice that whatever the plugin does.
func (p *process) kill() {
	p.killOnce.Do(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.client.Kill()
		}()
		select {
		case <-done:
			return
		case <-time.After(killGrace + 500*time.Millisecond):
		}
		if p.runner != nil {
			p.log.Warn("plugin did not exit when asked; killing it", "pid", p.runner.PID())
			_ = p.runner.Kill(context.Background())
		}
		select {
		case <-done:
		case <-time.After(killGrace):
			p.log.Error("plugin client did not shut down after its process was killed")
		}
	})
}

// sourceClientPlugin is the host side of the "source" plugin kind.
type sourceClientPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (sourceClientPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("pearld is the host; plugins serve")
}

func (sourceClientPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return pb.NewSourceClient(c), nil
}
