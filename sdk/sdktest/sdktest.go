package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pearld/pearld/sdk"
	pb "github.com/pearld/pearld/sdk/proto"
	"github.com/pearld/pearld/sources/pearl/pearltest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Host is a plugin served in the test's process and pearld's side of the
// connection to it.
type Host struct {
	conn   *grpc.ClientConn
	source pb.SourceClient
	cancel context.CancelFunc
	done   <-chan struct{}
}

// Start serves p in-process and connects to it. The plugin is not
// configured yet: call Configure before Poll. Close stops it.
func Start(p sdk.Plugin) (*Host, error) {
	ctx, cancel := context.WithCancel(context.Background())
	addr, done, err := sdk.ServeInProcess(ctx, p, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	conn, err := grpc.NewClient("passthrough:///"+addr.String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, addr.Network(), addr.String())
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(pb.MaxMessageSize)),
	)
	if err != nil {
		cancel()
		<-done
		return nil, fmt.Errorf("connecting to the plugin: %w", err)
	}
	return &Host{conn: conn, source: pb.NewSourceClient(conn), cancel: cancel, done: done}, nil
}

// Close disconnects and stops the plugin.
func (h *Host) Close() error {
	err := h.conn.Close()
	h.cancel()
	<-h.done
	return err
}

// Description is what the plugin declares, as pearld reads it.
type Description struct {
	Name, Version, Description string
	DataTypes                  []string
	Fields                     []Field
}

// Field is a declared configuration key; Type is its name (string, int,
// float, bool, duration or list) and Default its JSON ("" for none).
type Field struct {
	Name, Type, Default, Description string
	Required                         bool
}

// Describe returns the plugin's declaration.
func (h *Host) Describe(ctx context.Context) (*Description, error) {
	r, err := h.source.Describe(ctx, &pb.DescribeRequest{})
	if err != nil {
		return nil, err
	}
	d := &Description{Name: r.GetName(), Version: r.GetVersion(), Description: r.GetDescription(), DataTypes: r.GetDataTypes()}
	for _, f := range r.GetFields() {
		d.Fields = append(d.Fields, Field{Name: f.GetName(), Type: sdk.FieldType(f.GetType()).String(),
			Default: f.GetDefaultJson(), Description: f.GetDescription(), Required: f.GetRequired()})
	}
	return d, nil
}

// Configure sends options as a pipeline file's keys would be sent (values:
// strings, numbers, booleans, []string; durations as strings like "5s")
// and makes them the plugin's configuration. A rejected value is an
// *sdk.OptionError naming its key.
func (h *Host) Configure(ctx context.Context, options map[string]any) error {
	return h.configure(ctx, options, false)
}

// Validate checks options as `pearld validate` does, without keeping them.
func (h *Host) Validate(ctx context.Context, options map[string]any) error {
	return h.configure(ctx, options, true)
}

func (h *Host) configure(ctx context.Context, options map[string]any, validateOnly bool) error {
	if options == nil {
		options = map[string]any{}
	}
	b, err := json.Marshal(options)
	if err != nil {
		return fmt.Errorf("encoding options: %w", err)
	}
	r, err := h.source.Configure(ctx, &pb.ConfigureRequest{OptionsJson: b, ValidateOnly: validateOnly})
	if err != nil {
		return err
	}
	switch {
	case r.GetError() == "":
		return nil
	case r.GetKey() != "":
		return &sdk.OptionError{Key: r.GetKey(), Err: errors.New(r.GetError())}
	}
	return errors.New(r.GetError())
}

// Event is an event as pearld receives it from a plugin.
type Event struct {
	Type, Device, Channel, Publisher string
	Time                             time.Time
	Data                             json.RawMessage
	Hash                             uint64
}

// DeviceError is a poll's failure to observe its device: pearld would log
// it and back off. Reason classifies it as the pearl package does
// ("timeout", "unauthorized", ...), "" when unknown.
type DeviceError struct {
	Message, Reason string
}

func (e *DeviceError) Error() string { return e.Message }

// Poll polls device d once, as pearld does on its schedule. An error is a
// *DeviceError, or the failure of the call itself.
func (h *Host) Poll(ctx context.Context, d sdk.DeviceConfig) ([]Event, error) {
	r, err := h.source.Poll(ctx, &pb.PollRequest{Device: &pb.Device{
		Name: d.Name, Address: d.Address, Username: d.Username, Password: d.Password,
		InsecureSkipVerify: d.InsecureSkipVerify, TimeoutMs: d.Timeout.Milliseconds(),
	}})
	if err != nil {
		return nil, err
	}
	if r.GetError() != "" {
		return nil, &DeviceError{Message: r.GetError(), Reason: r.GetReason()}
	}
	out := make([]Event, 0, len(r.GetEvents()))
	for _, e := range r.GetEvents() {
		out = append(out, Event{
			Type: e.GetType(), Device: e.GetDevice(), Channel: e.GetChannel(), Publisher: e.GetPublisher(),
			Time: time.Unix(0, e.GetTimeUnixNano()), Data: e.GetData(), Hash: e.GetHash(),
		})
	}
	return out, nil
}

// NewDevice starts a fake Pearl configured by opts on a local port and
// returns its server (Close it when done; Device scripts it) and the
// DeviceConfig to poll it with.
func NewDevice(name string, opts pearltest.Options) (*pearltest.Server, sdk.DeviceConfig) {
	srv := pearltest.NewServer(pearltest.NewDevice(opts))
	username := opts.Username
	if username == "" {
		username = pearltest.DefaultUsername
	}
	return srv, sdk.DeviceConfig{Name: name, Address: srv.URL, Username: username, Password: opts.Password, Timeout: 5 * time.Second}
}
