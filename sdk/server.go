package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	pb "github.com/pearld/pearld/sdk/proto"
	"github.com/pearld/pearld/sources/pearl"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// server serves a Plugin over the Source service of the contract.
type server struct {
	pb.UnimplementedSourceServer

	p      *Plugin
	fields map[string]Field
	log    *slog.Logger

	mu      sync.Mutex
	src     Source
	devices map[string]*Device
}

func newServer(p Plugin, log *slog.Logger) (*server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fields, err := p.check()
	if err != nil {
		return nil, err
	}
	p.DataTypes = slices.Clone(p.DataTypes)
	return &server{p: &p, fields: fields, log: log, devices: map[string]*Device{}}, nil
}

// Describe returns the declaration.
func (s *server) Describe(context.Context, *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	r := &pb.DescribeResponse{
		Name:        s.p.Name,
		Version:     s.p.Version,
		Description: s.p.Description,
		DataTypes:   s.p.DataTypes,
	}
	for _, f := range s.p.Fields {
		f = s.fields[f.Name]
		r.Fields = append(r.Fields, &pb.Field{
			Name:        f.Name,
			Type:        pb.FieldType(f.Type),
			DefaultJson: defaultJSON(f),
			Description: f.Description,
			Required:    f.Required,
		})
	}
	return r, nil
}

// Configure checks the options and builds the source; unless
// validate_only is set, the new source replaces the old one.
func (s *server) Configure(_ context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	cfg, err := decodeOptions(s.fields, req.GetOptionsJson(), s.log)
	var src Source
	if err == nil {
		src, err = s.build(cfg)
	}
	if err != nil {
		resp := &pb.ConfigureResponse{Error: err.Error()}
		if oe, ok := errors.AsType[*OptionError](err); ok {
			resp.Key, resp.Error = oe.Key, oe.Err.Error()
		}
		return resp, nil
	}
	if req.GetValidateOnly() {
		closeSource(src, s.log)
		return &pb.ConfigureResponse{}, nil
	}
	s.mu.Lock()
	old := s.src
	s.src = src
	s.mu.Unlock()
	closeSource(old, s.log)
	return &pb.ConfigureResponse{}, nil
}

// build calls New, turning a panic into an error.
func (s *server) build(cfg Config) (src Source, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("building the source: panic: %v", r)
			s.log.Error("New panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	src, err = s.p.New(cfg)
	if err == nil && src == nil {
		err = errors.New("building the source: New returned no Source")
	}
	return src, err
}

// Poll polls one device with the configured source.
func (s *server) Poll(ctx context.Context, req *pb.PollRequest) (*pb.PollResponse, error) {
	s.mu.Lock()
	src := s.src
	s.mu.Unlock()
	if src == nil {
		return nil, status.Error(codes.FailedPrecondition, "polling: the plugin is not configured")
	}
	d, err := s.device(req.GetDevice())
	if err != nil {
		return &pb.PollResponse{Error: err.Error(), Reason: "config"}, nil
	}
	events, err := s.poll(ctx, src, d)
	if err != nil {
		return &pb.PollResponse{Error: err.Error(), Reason: pearl.ReasonOf(err)}, nil
	}
	now := time.Now()
	resp := &pb.PollResponse{Events: make([]*pb.Event, 0, len(events))}
	for i, e := range events {
		pe, err := s.encode(e, d.Name(), now)
		if err != nil {
			return &pb.PollResponse{Error: fmt.Sprintf("encoding event %d of device %s: %v", i, d.Name(), err), Reason: "plugin"}, nil
		}
		resp.Events = append(resp.Events, pe)
	}
	return resp, nil
}

// poll calls the source, turning a panic into an error.
func (s *server) poll(ctx context.Context, src Source, d *Device) (events []Event, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("polling %s: panic: %v", d.Name(), r)
			s.log.Error("Poll panicked", "device", d.Name(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	return src.Poll(ctx, d)
}

// device returns the Device of cfg, reusing the one of an earlier poll
// while its configuration is the same.
func (s *server) device(in *pb.Device) (*Device, error) {
	if in == nil || in.GetName() == "" {
		return nil, errors.New("polling: no device in the request")
	}
	cfg := DeviceConfig{
		Name:               in.GetName(),
		Address:            in.GetAddress(),
		Username:           in.GetUsername(),
		Password:           in.GetPassword(),
		InsecureSkipVerify: in.GetInsecureSkipVerify(),
		Timeout:            time.Duration(in.GetTimeoutMs()) * time.Millisecond,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.devices[cfg.Name]; ok && d.cfg == cfg {
		return d, nil
	}
	d, err := NewDevice(cfg)
	if err != nil {
		return nil, err
	}
	if old := s.devices[cfg.Name]; old != nil {
		old.close()
	}
	s.devices[cfg.Name] = d
	return d, nil
}

// encode turns an Event into its wire form, filling in the defaults.
func (s *server) encode(e Event, device string, now time.Time) (*pb.Event, error) {
	typ := e.Type
	if typ == "" {
		typ = s.p.DataTypes[0]
	}
	if !slices.Contains(s.p.DataTypes, typ) {
		return nil, fmt.Errorf("data type %q is not one the plugin declares (%v)", typ, s.p.DataTypes)
	}
	var data []byte
	switch v := e.Data.(type) {
	case json.RawMessage:
		if !json.Valid(v) {
			return nil, errors.New("data is not valid JSON")
		}
		data = v
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encoding data: %w", err)
		}
		data = b
	}
	at := e.Time
	if at.IsZero() {
		at = now
	}
	h := e.Hash
	if h == 0 {
		f := fnv.New64a()
		_, _ = f.Write(data)
		h = f.Sum64()
	}
	return &pb.Event{
		Type:         typ,
		Device:       device,
		Channel:      e.Channel,
		Publisher:    e.Publisher,
		TimeUnixNano: at.UnixNano(),
		Data:         data,
		Hash:         h,
	}, nil
}

// close releases the source and the devices' clients.
func (s *server) close() {
	s.mu.Lock()
	src := s.src
	s.src = nil
	devices := s.devices
	s.devices = map[string]*Device{}
	s.mu.Unlock()
	closeSource(src, s.log)
	for _, d := range devices {
		d.close()
	}
}

func closeSource(src Source, log *slog.Logger) {
	if c, ok := src.(io.Closer); ok {
		if err := c.Close(); err != nil {
			log.Warn("closing the source", "err", err)
		}
	}
}
