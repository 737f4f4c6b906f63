// Package sdk is what a pearld plugin imports. A plugin is a separate
// program that adds a data type to pearld: pearld starts it, tells it the
// options of its pipeline table, and polls each device through it on its
// own schedule; the plugin observes the device with the Pearl API client
// the built-in sources use (Device.Client) and returns events when
// something changed. Nothing of pearld's engine is part of this API.
//
// A plugin declares itself with a Plugin (name, data types, configuration
// keys, a constructor) and its main calls Serve:
//
//	func main() {
//		sdk.Serve(sdk.Plugin{
//			Name:      "channel_count",
//			Version:   "1.0.0",
//			DataTypes: []string{"channel_count"},
//			Fields:    []sdk.Field{{Name: "prefix", Type: sdk.String, Default: "channels"}},
//			New:       newSource, // func(sdk.Config) (sdk.Source, error)
//		})
//	}
//
// The Source's Poll(ctx, device) returns the events of one poll of one
// device. pearld calls it at the source's interval, one poll in flight per
// device, backs off while a device fails, restarts the plugin if it dies,
// and stops it with the pipeline. The plugin process serves one pipeline
// source, so a Source may keep per-device state in memory to emit changes
// only.
//
// The package sdktest runs a plugin inside a test, without building its
// binary, against fake Pearls. sdk/README.md walks through writing,
// building, testing and shipping a plugin; plugins/stream_quality is a
// complete one.
package sdk
