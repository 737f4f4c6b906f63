package sdk_test

import (
	"context"
	"fmt"

	"github.com/pearld/pearld/sdk"
	"github.com/pearld/pearld/sdk/sdktest"
	"github.com/pearld/pearld/sources/pearl"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

// channelCount is a plugin that reports how many channels each device has,
// whenever that number changes.
func channelCount() sdk.Plugin {
	return sdk.Plugin{
		Name:        "channel_count",
		Version:     "1.0.0",
		Description: "The number of channels of each device.",
		DataTypes:   []string{"channel_count"},
		Fields: []sdk.Field{
			{Name: "prefix", Type: sdk.String, Default: "channels", Description: "name of the count in the event data"},
		},
		New: func(cfg sdk.Config) (sdk.Source, error) {
			if cfg.String("prefix") == "" {
				return nil, sdk.BadOption("prefix", "must not be empty")
			}
			return &counter{key: cfg.String("prefix"), last: map[string]int{}}, nil
		},
	}
}

type counter struct {
	key  string
	last map[string]int // per device; Poll is never concurrent for one device
}

func (c *counter) Poll(ctx context.Context, d *sdk.Device) ([]sdk.Event, error) {
	chans, err := d.Client().Channels(ctx, pearl.ChannelsOptions{})
	if err != nil {
		return nil, err // the device failed: pearld logs it and backs off
	}
	if n, seen := c.last[d.Name()]; seen && n == len(chans) {
		return nil, nil // no change, no event
	}
	c.last[d.Name()] = len(chans)
	return []sdk.Event{{Data: map[string]int{c.key: len(chans)}}}, nil
}

// A plugin's main calls sdk.Serve(channelCount()). This example runs the
// same plugin in-process with sdktest against a fake Pearl, as a test of
// the plugin would.
func Example() {
	srv, dev := sdktest.NewDevice("studio-a", pearltest.Options{})
	defer srv.Close()
	host, err := sdktest.Start(channelCount())
	if err != nil {
		panic(err)
	}
	defer host.Close()

	ctx := context.Background()
	if err := host.Configure(ctx, map[string]any{"prefix": "count"}); err != nil {
		panic(err)
	}
	for range 2 {
		events, err := host.Poll(ctx, dev)
		if err != nil {
			panic(err)
		}
		fmt.Println(len(events), "event(s)")
		for _, e := range events {
			fmt.Println(e.Type, e.Device, string(e.Data))
		}
	}
	srv.Device.RemoveChannel("2")
	events, _ := host.Poll(ctx, dev)
	fmt.Println(events[0].Type, events[0].Device, string(events[0].Data))

	fmt.Println(host.Validate(ctx, map[string]any{"prefix": ""}))
	fmt.Println(host.Validate(ctx, map[string]any{"prefx": "x"}))
	// Output:
	// 1 event(s)
	// channel_count studio-a {"count":2}
	// 0 event(s)
	// channel_count studio-a {"count":1}
	// option prefix: must not be empty
	// option prefx: unknown option (the plugin declares: prefix)
}
