package sdk

import (
	"context"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl"
)

// DeviceConfig is a device as the pipeline file configures it. pearld
// sends it with every poll; tests build their own (see sdktest).
type DeviceConfig struct {
	// Name is the device id used in events and subscription keys.
	Name string
	// Address is a host, host:port, or an http:// or https:// URL.
	Address string
	// Username for HTTP Basic auth; "" means "admin".
	Username string
	// Password for HTTP Basic auth; may be empty.
	Password string
	// InsecureSkipVerify accepts self-signed HTTPS certificates.
	InsecureSkipVerify bool
	// Timeout bounds one request; zero means 5s.
	Timeout time.Duration
}

// Device is a Pearl a Source polls. The sdk keeps one Device per device of
// the pipeline for the life of the plugin process (a new one when its
// configuration changes), so a Source may key its state by Name.
type Device struct {
	cfg    DeviceConfig
	client *pearl.Client
}

// NewDevice returns a Device for cfg. It validates the address and builds
// the client; it does not touch the network. Plugins get their Devices
// from Poll; tests build their own.
func NewDevice(cfg DeviceConfig) (*Device, error) {
	c, err := pearl.NewClient(&engine.Device{
		Name:               cfg.Name,
		Address:            cfg.Address,
		Username:           cfg.Username,
		Password:           cfg.Password,
		InsecureSkipVerify: cfg.InsecureSkipVerify,
		Timeout:            engine.Duration(cfg.Timeout),
	}, pearl.ClientOptions{})
	if err != nil {
		return nil, err
	}
	return &Device{cfg: cfg, client: c}, nil
}

// Name returns the device id: the device's name in the pipeline file.
func (d *Device) Name() string { return d.cfg.Name }

// Host returns the host of the device's address, without port: the
// device_ip of event data.
func (d *Device) Host() string { return d.client.Host() }

// Client returns the device's Pearl REST API client: the code pearld's
// own sources use, with HTTP Basic auth, per-request timeouts, at most
// pearl.MaxInFlight requests in flight and typed errors (errors.Is with
// pearl.ErrUnauthorized, pearl.ErrUnavailable, ...).
func (d *Device) Client() *pearl.Client { return d.client }

func (d *Device) close() { _ = d.client.Close(context.Background()) }
