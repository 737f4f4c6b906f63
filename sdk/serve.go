package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	pb "github.com/pearld/pearld/sdk/proto"
	"google.golang.org/grpc"
)

// Serve serves p to the pearld that started this process, and returns when
// pearld is done with it (or gone). A plugin's main calls it and nothing
// else:
//
//	func main() {
//		sdk.Serve(sdk.Plugin{Name: "my_plugin", DataTypes: ..., New: ...})
//	}
//
// A declaration error (a bad name, a default of the wrong type, ...) is
// printed to stderr and the process exits with status 1: pearld reports it.
// Run by hand, the binary says it is a plugin and exits with status 1.
//
// Once serving, what the plugin writes to stdout or stderr goes to pearld's
// log as warnings; Config.Logger and slog's default logger write
// structured records that pearld logs at their level.
func Serve(p Plugin) {
	log := slog.New(newLogHandler(os.Stderr, levelFromEnv()))
	srv, err := newServer(p, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[0], err)
		os.Exit(1)
	}
	defer srv.close()
	slog.SetDefault(log.With("plugin", p.Name))
	if os.Getenv(pb.MagicCookieKey) == pb.MagicCookieValue {
		go exitWithParent(log)
	}
	plugin.Serve(serveConfig(srv, hclogFor(os.Stderr), nil))
}

// ServeInProcess serves p from the calling process until ctx ends, for
// test harnesses such as sdktest: it returns the address of the plugin's
// gRPC socket (which a go-plugin client reattaches to, without TLS) and a
// channel closed once serving stopped. Plugins call Serve instead.
func ServeInProcess(ctx context.Context, p Plugin, log *slog.Logger) (net.Addr, <-chan struct{}, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv, err := newServer(p, log)
	if err != nil {
		return nil, nil, err
	}
	reattach := make(chan *plugin.ReattachConfig, 1)
	closed := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer srv.close()
		plugin.Serve(serveConfig(srv, hclog.NewNullLogger(), &plugin.ServeTestConfig{
			Context:          ctx,
			ReattachConfigCh: reattach,
			CloseCh:          closed,
		}))
	}()
	select {
	case rc := <-reattach:
		return rc.Addr, done, nil
	case <-done:
		return nil, nil, errors.New("serving in process: the plugin server stopped before it listened")
	case <-time.After(10 * time.Second):
		return nil, nil, errors.New("serving in process: the plugin server did not listen within 10s")
	}
}

func serveConfig(srv *server, log hclog.Logger, test *plugin.ServeTestConfig) *plugin.ServeConfig {
	return &plugin.ServeConfig{
		HandshakeConfig: handshake(),
		Plugins:         plugin.PluginSet{pb.PluginSource: &sourcePlugin{srv: srv}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts,
				grpc.MaxRecvMsgSize(pb.MaxMessageSize),
				grpc.MaxSendMsgSize(pb.MaxMessageSize))...)
		},
		Logger: log,
		Test:   test,
	}
}

// handshake returns go-plugin's handshake for the contract of sdk/proto.
func handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  pb.ProtocolVersion,
		MagicCookieKey:   pb.MagicCookieKey,
		MagicCookieValue: pb.MagicCookieValue,
	}
}

// sourcePlugin is the plugin side of the "source" plugin kind.
type sourcePlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srv *server
}

func (p *sourcePlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterSourceServer(s, p.srv)
	return nil
}

func (p *sourcePlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("the sdk serves plugins; pearld is the client")
}

// exitWithParent ends the process when pearld is gone, a second line of
// defence behind the parent-death signal pearld sets up on Linux: a plugin
// must never outlive its host.
func exitWithParent(log *slog.Logger) {
	parent := os.Getppid()
	for range time.Tick(500 * time.Millisecond) {
		if os.Getppid() != parent {
			log.Error("pearld is gone; exiting")
			os.Exit(3)
		}
	}
}
