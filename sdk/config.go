package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"
)

// decodeOptions checks the options the host sent (a JSON object of the
// keys set in the pipeline file) against the declared fields and returns
// the Config, defaults applied. Errors are *OptionError.
func decodeOptions(fields map[string]Field, raw []byte, log *slog.Logger) (Config, error) {
	cfg := Config{Logger: log, values: map[string]any{}, fields: fields}
	var opts map[string]json.RawMessage
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &opts); err != nil {
			return cfg, fmt.Errorf("decoding options: %w", err)
		}
	}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f, ok := fields[k]
		if !ok {
			return cfg, &OptionError{Key: k, Err: fmt.Errorf("unknown option (the plugin declares: %s)", declared(fields))}
		}
		v, err := decodeValue(f.Type, opts[k])
		if err != nil {
			return cfg, &OptionError{Key: k, Err: err}
		}
		cfg.values[k] = v
	}
	for _, name := range sortedFieldNames(fields) {
		f := fields[name]
		if _, set := cfg.values[name]; set {
			continue
		}
		if f.Required {
			return cfg, &OptionError{Key: name, Err: errors.New("required, but not set")}
		}
		if f.Default != nil {
			cfg.values[name] = f.Default
		}
	}
	return cfg, nil
}

// decodeValue decodes one JSON value as a value of type t.
func decodeValue(t FieldType, raw json.RawMessage) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("decoding value: %w", err)
	}
	switch t {
	case String:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case Int:
		if n, ok := v.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				return i, nil
			}
			if f, err := n.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
				return int64(f), nil
			}
			return nil, fmt.Errorf("want an integer, got %s", n)
		}
	case Float:
		if n, ok := v.(json.Number); ok {
			f, err := n.Float64()
			if err != nil {
				return nil, fmt.Errorf("want a number, got %s", n)
			}
			return f, nil
		}
	case Bool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case Duration:
		if s, ok := v.(string); ok {
			dur, err := time.ParseDuration(s)
			if err != nil {
				return nil, fmt.Errorf("want a duration such as \"500ms\" or \"5s\", got %q", s)
			}
			return dur, nil
		}
		return nil, fmt.Errorf("want a duration string such as \"5s\", got %s", describeJSON(v))
	case List:
		if items, ok := v.([]any); ok {
			out := make([]string, 0, len(items))
			for i, it := range items {
				s, ok := it.(string)
				if !ok {
					return nil, fmt.Errorf("item %d: want a string, got %s", i, describeJSON(it))
				}
				out = append(out, s)
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("want %s, got %s", article(t), describeJSON(v))
}

// article returns the type's name with its indefinite article.
func article(t FieldType) string {
	if t == Int {
		return "an int"
	}
	return "a " + t.String()
}

// describeJSON names a decoded JSON value's kind for errors.
func describeJSON(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("the string %q", x)
	case json.Number:
		return "the number " + x.String()
	case bool:
		return fmt.Sprintf("%t", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

func sortedFieldNames(fields map[string]Field) []string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func declared(fields map[string]Field) string {
	if len(fields) == 0 {
		return "no options"
	}
	return strings.Join(sortedFieldNames(fields), ", ")
}
