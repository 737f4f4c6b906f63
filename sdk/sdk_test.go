package sdk

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type nopSource struct{}

func (nopSource) Poll(context.Context, *Device) ([]Event, error) { return nil, nil }

func newNop(Config) (Source, error) { return nopSource{}, nil }

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		p    Plugin
		want string
	}{
		{"ok", Plugin{Name: "ok", DataTypes: []string{"t"}, New: newNop}, ""},
		{"bad name", Plugin{Name: "Bad-Name", DataTypes: []string{"t"}, New: newNop}, `plugin name "Bad-Name"`},
		{"no new", Plugin{Name: "p", DataTypes: []string{"t"}}, "New is not set"},
		{"no types", Plugin{Name: "p", New: newNop}, "no DataTypes declared"},
		{"type with colon", Plugin{Name: "p", DataTypes: []string{"a:b"}, New: newNop}, `data type "a:b"`},
		{"reserved field", Plugin{Name: "p", DataTypes: []string{"t"}, New: newNop, Fields: []Field{{Name: "interval", Type: Duration}}}, `field "interval": the name is one of pearld's own keys`},
		{"duplicate field", Plugin{Name: "p", DataTypes: []string{"t"}, New: newNop, Fields: []Field{{Name: "a", Type: Int}, {Name: "a", Type: Int}}}, `field "a" declared twice`},
		{"bad default", Plugin{Name: "p", DataTypes: []string{"t"}, New: newNop, Fields: []Field{{Name: "a", Type: Duration, Default: "5s"}}}, `field "a": default: string is not a duration`},
		{"bad type", Plugin{Name: "p", DataTypes: []string{"t"}, New: newNop, Fields: []Field{{Name: "a"}}}, `field "a": unknown type`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.p.check()
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestDecodeOptions(t *testing.T) {
	p := Plugin{Name: "p", DataTypes: []string{"t"}, New: newNop, Fields: []Field{
		{Name: "s", Type: String, Default: "dflt"},
		{Name: "i", Type: Int, Default: 3},
		{Name: "f", Type: Float, Default: 1},
		{Name: "b", Type: Bool},
		{Name: "d", Type: Duration, Default: time.Second},
		{Name: "l", Type: List},
		{Name: "r", Type: String, Required: true},
	}}
	fields, err := p.check()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := decodeOptions(fields, []byte(`{"r":"x","i":7,"f":2,"b":true,"d":"250ms","l":["a","b"]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.String("s") != "dflt" || cfg.Int("i") != 7 || cfg.Float("f") != 2 || !cfg.Bool("b") ||
		cfg.Duration("d") != 250*time.Millisecond || strings.Join(cfg.List("l"), ",") != "a,b" || cfg.String("r") != "x" {
		t.Fatalf("config = %+v", cfg.values)
	}
	cfg, err = decodeOptions(fields, []byte(`{"r":"x"}`), nil)
	if err != nil || cfg.Int("i") != 3 || cfg.Float("f") != 1 || cfg.Duration("d") != time.Second || cfg.Has("l") {
		t.Fatalf("defaults: %v %+v", err, cfg.values)
	}

	bad := []struct{ json, key, want string }{
		{`{}`, "r", "required, but not set"},
		{`{"r":"x","i":1.5}`, "i", "want an integer, got 1.5"},
		{`{"r":"x","i":"1"}`, "i", `want an int, got the string "1"`},
		{`{"r":"x","d":"soon"}`, "d", `want a duration such as "500ms" or "5s", got "soon"`},
		{`{"r":"x","d":5}`, "d", "want a duration string"},
		{`{"r":"x","l":["a",1]}`, "l", "item 1: want a string, got the number 1"},
		{`{"r":"x","zz":1}`, "zz", "unknown option (the plugin declares: b, d, f, i, l, r, s)"},
	}
	for _, b := range bad {
		_, err := decodeOptions(fields, []byte(b.json), nil)
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Key != b.key || !strings.Contains(oe.Err.Error(), b.want) {
			t.Errorf("%s: %v, want key %s: %s", b.json, err, b.key, b.want)
		}
	}
}

func TestConfigPanicsOnUndeclared(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	Config{fields: map[string]Field{"a": {Name: "a", Type: Int}}}.String("a")
}

func TestEncode(t *testing.T) {
	s, err := newServer(Plugin{Name: "p", DataTypes: []string{"t", "u"}, New: newNop}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(100, 0)
	e, err := s.encode(Event{Channel: "1", Data: map[string]int{"n": 1}}, "dev", now)
	if err != nil || e.Type != "t" || e.Device != "dev" || string(e.Data) != `{"n":1}` || e.Hash == 0 || e.TimeUnixNano != now.UnixNano() {
		t.Fatalf("encoded %+v, %v", e, err)
	}
	if _, err := s.encode(Event{Type: "v", Data: 1}, "dev", now); err == nil {
		t.Error("an undeclared data type was encoded")
	}
	if _, err := s.encode(Event{Data: func() {}}, "dev", now); err == nil {
		t.Error("unencodable data was encoded")
	}
}
