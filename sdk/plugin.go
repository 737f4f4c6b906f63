package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	pb "github.com/pearld/pearld/sdk/proto"
)

// Plugin declares a plugin: what it is, the data types of the events it
// emits, the configuration keys it takes, and how to build its Source from
// them. A plugin binary passes its Plugin to Serve.
type Plugin struct {
	// Name is the plugin's name, which must equal the file name of its
	// binary in pearld's plugins directory and is what pipeline files
	// write as `plugin = "NAME"`: lower case letters, digits and _.
	Name string
	// Version is the plugin's version, such as "1.2.0"; `pearld plugins`
	// shows it.
	Version string
	// Description is one sentence about what the plugin observes.
	Description string
	// DataTypes are the data types of the events the plugin emits, such as
	// "stream_quality"; at least one. Clients subscribe to them.
	DataTypes []string
	// Fields are the plugin's own configuration keys. pearld checks the
	// keys of the pipeline file against them (`pearld validate` reports an
	// unknown key at its line), and the sdk checks the types of their
	// values and applies the defaults before New sees them.
	Fields []Field
	// New builds the source from its configuration. It may reject a value
	// with an *OptionError (see BadOption), which pearld reports at the
	// key's line. New must not touch the network: `pearld validate` calls
	// it too, and then discards the source (closing it if it implements
	// io.Closer).
	New func(cfg Config) (Source, error)
}

// Source is a plugin's data-type source. pearld schedules the polls: it
// calls Poll for each device of the pipeline's source at its interval,
// backs off while a device fails, and never calls Poll concurrently for
// one device; Polls of different devices run concurrently. One plugin
// process serves one configured source, so a Source may keep what it
// learned of each device (to emit changes only) in memory; a restarted
// plugin starts afresh.
//
// A Source that implements io.Closer is closed when it is replaced or the
// plugin exits.
type Source interface {
	// Poll observes one device once and returns the events to emit, often
	// none. ctx carries the poll's deadline. An error means the device
	// could not be polled: pearld logs it and backs off; the errors of the
	// device's Client (see the pearl package) say why. A panic is
	// recovered and reported like an error.
	Poll(ctx context.Context, d *Device) ([]Event, error)
}

// Event is one observation a Source emits for the device it polled.
type Event struct {
	// Type is one of the plugin's DataTypes; "" means the first.
	Type string
	// Channel is the channel id, "" for device-level data.
	Channel string
	// Publisher is the publisher id, "" unless the data is per publisher.
	Publisher string
	// Time is when the state was observed; zero means when Poll returned.
	Time time.Time
	// Data is the event's payload, encoded with encoding/json (a
	// json.RawMessage is sent as is). Clients receive it as the `data` of
	// their updates.
	Data any
	// Hash covers the fields that define a change: pearld's dedup drops an
	// event whose Hash equals the last one of its key. Zero means a hash
	// of the encoded Data, which suits data that holds no counters that
	// move on every poll.
	Hash uint64
}

// FieldType is the type of a configuration key's value.
type FieldType int

// The types of configuration keys, with the Go type Config returns and of
// Field.Default.
const (
	String   FieldType = FieldType(pb.FieldType_FIELD_TYPE_STRING)   // string
	Int      FieldType = FieldType(pb.FieldType_FIELD_TYPE_INT)      // int64 (Default: any integer type)
	Float    FieldType = FieldType(pb.FieldType_FIELD_TYPE_FLOAT)    // float64 (Default: a float or an int)
	Bool     FieldType = FieldType(pb.FieldType_FIELD_TYPE_BOOL)     // bool
	Duration FieldType = FieldType(pb.FieldType_FIELD_TYPE_DURATION) // time.Duration, written "5s"
	List     FieldType = FieldType(pb.FieldType_FIELD_TYPE_LIST)     // []string
)

// String returns the type's name as `pearld plugins` shows it: string,
// int, float, bool, duration or list.
func (t FieldType) String() string {
	switch t {
	case String:
		return "string"
	case Int:
		return "int"
	case Float:
		return "float"
	case Bool:
		return "bool"
	case Duration:
		return "duration"
	case List:
		return "list"
	}
	return fmt.Sprintf("FieldType(%d)", int(t))
}

// Field declares one configuration key of a plugin.
type Field struct {
	// Name is the key in the pipeline file: lower case letters, digits and
	// _, starting with a letter; not one of pearld's own keys (type,
	// plugin, devices, interval, max_backoff, sha256, ...).
	Name string
	// Type is the type of the value.
	Type FieldType
	// Default is the value when the key is not set, of the type's Go type
	// (see FieldType); nil means none (Config then returns the zero value
	// and Config.Has reports false).
	Default any
	// Description says what the key does, for `pearld plugins`.
	Description string
	// Required keys must be set in the pipeline file.
	Required bool
}

// Config is a source's configuration: the values of its declared keys,
// type-checked, with the defaults applied. Reading a key the plugin did
// not declare, or with the getter of another type, panics: it is a bug of
// the plugin.
type Config struct {
	// Logger writes to pearld's log, tagged with the plugin's name.
	Logger *slog.Logger

	values map[string]any
	fields map[string]Field
}

func (c Config) get(name string, t FieldType) any {
	f, ok := c.fields[name]
	if !ok {
		panic(fmt.Sprintf("sdk: option %q is not declared by the plugin", name))
	}
	if f.Type != t {
		panic(fmt.Sprintf("sdk: option %q is a %s, not a %s", name, f.Type, t))
	}
	return c.values[name]
}

// Has reports whether the key is set, in the pipeline file or by its
// default.
func (c Config) Has(name string) bool {
	if _, ok := c.fields[name]; !ok {
		panic(fmt.Sprintf("sdk: option %q is not declared by the plugin", name))
	}
	_, ok := c.values[name]
	return ok
}

// String returns the value of a String key.
func (c Config) String(name string) string { s, _ := c.get(name, String).(string); return s }

// Int returns the value of an Int key.
func (c Config) Int(name string) int64 { n, _ := c.get(name, Int).(int64); return n }

// Float returns the value of a Float key.
func (c Config) Float(name string) float64 { f, _ := c.get(name, Float).(float64); return f }

// Bool returns the value of a Bool key.
func (c Config) Bool(name string) bool { b, _ := c.get(name, Bool).(bool); return b }

// Duration returns the value of a Duration key.
func (c Config) Duration(name string) time.Duration {
	d, _ := c.get(name, Duration).(time.Duration)
	return d
}

// List returns the value of a List key. The caller may modify it.
func (c Config) List(name string) []string {
	l, _ := c.get(name, List).([]string)
	return append([]string(nil), l...)
}

// OptionError is an error about the value of one configuration key.
// Returned from Plugin.New, pearld reports it at the key's line.
type OptionError struct {
	Key string
	Err error
}

func (e *OptionError) Error() string { return fmt.Sprintf("option %s: %v", e.Key, e.Err) }
func (e *OptionError) Unwrap() error { return e.Err }

// BadOption returns an *OptionError about key, with a message formatted
// as by fmt.Errorf.
func BadOption(key, format string, args ...any) error {
	return &OptionError{Key: key, Err: fmt.Errorf(format, args...)}
}

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// check validates the declaration and returns the fields by name, with
// their defaults normalised to the types Config returns.
func (p *Plugin) check() (map[string]Field, error) {
	var errs []error
	if !namePattern.MatchString(p.Name) {
		errs = append(errs, fmt.Errorf("plugin name %q: use 1-64 of a-z 0-9 _, starting with a letter", p.Name))
	}
	if p.New == nil {
		errs = append(errs, errors.New("New is not set"))
	}
	if len(p.DataTypes) == 0 {
		errs = append(errs, errors.New("no DataTypes declared"))
	}
	seen := map[string]bool{}
	for _, t := range p.DataTypes {
		switch {
		case !namePattern.MatchString(t):
			errs = append(errs, fmt.Errorf("data type %q: use 1-64 of a-z 0-9 _, starting with a letter", t))
		case seen[t]:
			errs = append(errs, fmt.Errorf("data type %q declared twice", t))
		}
		seen[t] = true
	}
	fields := make(map[string]Field, len(p.Fields))
	for _, f := range p.Fields {
		switch {
		case !namePattern.MatchString(f.Name):
			errs = append(errs, fmt.Errorf("field %q: use 1-64 of a-z 0-9 _, starting with a letter", f.Name))
			continue
		case pb.IsReserved(f.Name):
			errs = append(errs, fmt.Errorf("field %q: the name is one of pearld's own keys", f.Name))
			continue
		case fields[f.Name].Name != "":
			errs = append(errs, fmt.Errorf("field %q declared twice", f.Name))
			continue
		case f.Type < String || f.Type > List:
			errs = append(errs, fmt.Errorf("field %q: unknown type %s", f.Name, f.Type))
			continue
		}
		if f.Default != nil {
			v, err := normalizeDefault(f.Type, f.Default)
			if err != nil {
				errs = append(errs, fmt.Errorf("field %q: default: %w", f.Name, err))
				continue
			}
			f.Default = v
		}
		fields[f.Name] = f
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("checking plugin declaration: %w", errors.Join(errs...))
	}
	return fields, nil
}

// normalizeDefault converts a declared default to the Go type Config
// returns for t.
func normalizeDefault(t FieldType, v any) (any, error) {
	switch t {
	case String:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case Int:
		switch n := v.(type) {
		case int:
			return int64(n), nil
		case int32:
			return int64(n), nil
		case int64:
			return n, nil
		}
	case Float:
		switch n := v.(type) {
		case float64:
			return n, nil
		case float32:
			return float64(n), nil
		case int:
			return float64(n), nil
		}
	case Bool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case Duration:
		if d, ok := v.(time.Duration); ok {
			return d, nil
		}
	case List:
		if l, ok := v.([]string); ok {
			return append([]string(nil), l...), nil
		}
	}
	return nil, fmt.Errorf("%T is not a %s", v, t)
}

// defaultJSON encodes a normalised default for Describe.
func defaultJSON(f Field) string {
	if f.Default == nil {
		return ""
	}
	v := f.Default
	if d, ok := v.(time.Duration); ok {
		v = d.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "" // normalised defaults always encode
	}
	return string(b)
}
