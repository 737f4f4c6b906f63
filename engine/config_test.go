package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLoadDesignExample(t *testing.T) {
	p, err := LoadFile("testdata/design.toml", LoadOptions{Registry: testRegistry(), LookupEnv: envOf(map[string]string{"PEARL_PASSWORD": "s3cret"})})
	if err != nil {
		t.Fatalf("the DESIGN.md example must load: %v", err)
	}
	if p.Name != "design" {
		t.Errorf("name = %q, want design", p.Name)
	}
	d := p.Devices["studio-a"]
	if d == nil || d.Address != "192.168.1.100" || d.Password != "s3cret" || d.Username != "admin" {
		t.Fatalf("device studio-a = %+v", d)
	}
	pub := p.Component("publishers")
	if pub == nil || pub.Type != "pearl_publisher_status" {
		t.Fatalf("publishers = %+v", pub)
	}
	src := pub.Value.(*testSource)
	if src.Interval.D() != 5*time.Second || len(src.Devices) != 1 || src.Devices[0] != "*" {
		t.Errorf("publishers config = %+v", src)
	}
	if got := p.Component("latest").Value.(*testProc).TTL.D(); got != 300*time.Second {
		t.Errorf("ttl = %s", got)
	}
	// Topological order: every component after its inputs.
	pos := map[string]int{}
	for i, c := range p.Components {
		pos[c.Name] = i
	}
	for _, c := range p.Components {
		for _, in := range c.Inputs {
			if pos[in] > pos[c.Name] {
				t.Errorf("%s comes before its input %s", c.Name, in)
			}
		}
	}
	if c := p.Component("live"); c.Buffer != defaultBuffer || c.WhenFull != "block" {
		t.Errorf("defaults: buffer %d when_full %q", c.Buffer, c.WhenFull)
	}
}

func TestLoadErrors(t *testing.T) {
	const head = `
[devices.a]
address = "127.0.0.1"
`
	tests := []struct {
		name string
		src  string
		env  map[string]string
		want []string // each must appear in the error text
	}{
		{"unknown key with line", head + `
[sources.p]
type = "pearl_publisher_status"
intervall = "5s"
`, nil, []string{`x.toml:7: sources.p: unknown key "sources.p.intervall"`}},
		{"unknown engine key on a source", head + `
[sources.p]
type = "pearl_publisher_status"
inputs = ["q"]
`, nil, []string{`x.toml:7: sources.p: unknown key "sources.p.inputs"`}},
		{"unknown top-level table", head + `
[source.p]
type = "x"
`, nil, []string{`x.toml:5: unknown key "source.p"`}},
		{"unknown device key", head + `adress = "x"
`, nil, []string{`x.toml:4: devices.a: unknown key "devices.a.adress"`}},
		{"unknown type", head + `
[sources.p]
type = "pearl_publisher"
`, nil, []string{`x.toml:5: sources.p: unknown source type "pearl_publisher" (known: pearl_device_health, pearl_publisher_status)`}},
		{"missing type", head + `
[sinks.s]
inputs = ["x"]
`, nil, []string{`x.toml:5: sinks.s: missing type`}},
		{"unknown input", head + `
[sources.p]
type = "pearl_publisher_status"
[sinks.s]
type = "websocket"
inputs = ["nope"]
`, nil, []string{`x.toml:7: sinks.s: unknown input "nope"`}},
		{"missing inputs", head + `
[sinks.s]
type = "websocket"
`, nil, []string{`sinks.s: missing inputs`}},
		{"cycle", head + `
[sources.p]
type = "pearl_publisher_status"
[processors.a]
type = "dedup"
inputs = ["p", "b"]
[processors.b]
type = "dedup"
inputs = ["a"]
`, nil, []string{`processors.a: cycle: a -> b -> a`}},
		{"self cycle", head + `
[processors.a]
type = "dedup"
inputs = ["a"]
`, nil, []string{`processors.a: cycle: a takes its own output as input`}},
		{"sink as input", head + `
[sources.p]
type = "pearl_publisher_status"
[sinks.s]
type = "websocket"
inputs = ["p"]
[sinks.t]
type = "websocket"
inputs = ["s"]
`, nil, []string{`sinks.t: input "s" is a sink`}},
		{"missing variable", head + `password = "${PEARL_PASS}"
`, nil, []string{`x.toml:4: environment variable PEARL_PASS is not set`}},
		{"wrong value type", head + `
[sources.p]
type = "pearl_publisher_status"
count = "three"
`, nil, []string{`x.toml:7: sources.p:`}},
		{"bad duration", head + `
[sources.p]
type = "pearl_publisher_status"
interval = "5 seconds"
`, nil, []string{`x.toml:7`, `want a number with a unit`}},
		{"syntax error", head + `
[sources.p
`, nil, []string{`x.toml:5`}},
		{"missing address", `
[devices.a]
username = "x"
`, nil, []string{`x.toml:2: devices.a: missing address`}},
		{"bad when_full", head + `
[sources.p]
type = "pearl_publisher_status"
[sinks.s]
type = "websocket"
inputs = ["p"]
when_full = "drop"
`, nil, []string{`sinks.s: when_full must be "block" or "drop_newest"`}},
		{"several errors at once", head + `
[sources.p]
type = "nope1"
[sinks.s]
type = "nope2"
inputs = ["p"]
`, nil, []string{`unknown source type "nope1"`, `unknown sink type "nope2"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("x.toml", []byte(tt.src), LoadOptions{Registry: testRegistry(), LookupEnv: envOf(tt.env)})
			if err == nil {
				t.Fatal("loaded without error")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *ConfigError: %v", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%s\ndoes not contain\n%s", err, w)
				}
			}
		})
	}
}

func TestExpandVars(t *testing.T) {
	env := envOf(map[string]string{"A": "alpha", "Q": `say "hi" \ now`, "EMPTY": "", "S": "it's"})
	tests := []struct {
		name, src, want, err string
	}{
		{"plain", `x = "${A}"`, `x = "alpha"`, ""},
		{"default unused", `x = "${A:-z}"`, `x = "alpha"`, ""},
		{"default used", `x = "${B:-z}"`, `x = "z"`, ""},
		{"empty uses default", `x = "${EMPTY:-z}"`, `x = "z"`, ""},
		{"empty without default", `x = "${EMPTY}"`, `x = ""`, ""},
		{"escaped for basic strings", `x = "${Q}"`, `x = "say \"hi\" \\ now"`, ""},
		{"literal string", `x = '${A}'`, `x = 'alpha'`, ""},
		{"quote in literal string", `x = '${S}'`, "", "cannot be written inside a ' string"},
		{"comments untouched", "# ${NOPE}\nx = 1 # ${NOPE}", "# ${NOPE}\nx = 1 # ${NOPE}", ""},
		{"dollar escape", `x = "$${A}"`, `x = "${A}"`, ""},
		{"missing", "\n\nx = \"${NOPE}\"", "", "3: environment variable NOPE is not set"},
		{"bad name", `x = "${1A}"`, "", "invalid variable reference"},
		{"number outside quotes", "x = ${N:-50}\ny = ${A:-1}", "", "${A:-1} outside quotes must be a number or true/false"},
		{"default number outside quotes", "x = ${N:-50}\ny = ${B:-true}", "x = 50\ny = true", ""},
		{"unterminated", `x = "${A"`, "", "unterminated ${"},
		{"multi-line string", "x = \"\"\"\n${A}\n\"\"\"", "x = \"\"\"\nalpha\n\"\"\"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := expandVars([]byte(tt.src), env)
			if tt.err != "" {
				if len(errs) == 0 {
					t.Fatalf("no error, got %q", got)
				}
				msg := ""
				for _, e := range errs {
					msg += strings.TrimSpace(string(rune('0'+e.line))) + ": " + e.msg + "\n"
				}
				if !strings.Contains(msg, tt.err) {
					t.Fatalf("errors %q do not contain %q", msg, tt.err)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMatchDevices(t *testing.T) {
	env, closeEnv := NewEnv(EnvOptions{Devices: map[string]*Device{
		"studio-a": {Name: "studio-a"}, "studio-b": {Name: "studio-b"}, "lobby": {Name: "lobby"},
	}})
	defer closeEnv(t.Context())
	tests := []struct {
		patterns []string
		want     string
		err      string
	}{
		{nil, "lobby studio-a studio-b", ""},
		{[]string{"*"}, "lobby studio-a studio-b", ""},
		{[]string{"studio-*"}, "studio-a studio-b", ""},
		{[]string{"lobby", "studio-a", "lobby"}, "lobby studio-a", ""},
		{[]string{"cellar"}, "", `"cellar" matches no device`},
		{[]string{"["}, "", "bad pattern"},
	}
	for _, tt := range tests {
		got, err := env.MatchDevices(tt.patterns)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: err = %v, want %q", tt.patterns, err, tt.err)
			}
			continue
		}
		var names []string
		for _, d := range got {
			names = append(names, d.Name)
		}
		if strings.Join(names, " ") != tt.want {
			t.Errorf("%v: got %v, want %s", tt.patterns, names, tt.want)
		}
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		e    Event
		want string
	}{
		{Event{Type: "device_health", Device: "a"}, "device_health:a"},
		{Event{Type: "publisher_status", Device: "192.168.1.100", Channel: "1"}, "publisher_status:192.168.1.100:1"},
		{Event{Type: "x", Device: "a", Channel: "1", Publisher: "0"}, "x:a:1:0"},
	}
	for _, tt := range tests {
		if got := tt.e.Key(); got != tt.want {
			t.Errorf("Key() = %q, want %q", got, tt.want)
		}
		k, err := ParseKey(tt.want)
		if err != nil || k.Type != tt.e.Type || k.Device != tt.e.Device || k.Channel != tt.e.Channel || k.Publisher != tt.e.Publisher {
			t.Errorf("ParseKey(%q) = %+v, %v", tt.want, k, err)
		}
	}
	if _, err := ParseKey("nodevice"); err == nil {
		t.Error("ParseKey accepted a key without device")
	}
	var a, b Hasher
	a.Add("ab")
	a.Add("c")
	b.Add("a")
	b.Add("bc")
	if a.Sum() == b.Sum() {
		t.Error("hasher ignores field boundaries")
	}
}

type sharedBlock struct {
	Secret string   `toml:"secret"`
	Hosts  []string `toml:"hosts"`
}

type embeddingSink struct {
	sharedBlock
	Listen string `toml:"listen"`
	hidden int
}

func (*embeddingSink) Write(context.Context, []Event) error { return nil }

func TestLoadEmbeddedSettings(t *testing.T) {
	reg := testRegistry()
	reg.Register(KindSink, "embedding", func() any { return &embeddingSink{sharedBlock: sharedBlock{Hosts: []string{"default"}}, hidden: 7} })
	p, err := Load("x.toml", []byte(`
[sources.s]
type = "pearl_publisher_status"
[sinks.k]
type = "embedding"
inputs = ["s"]
listen = ":1"
secret = "abc"
`), LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	k := p.Component("k").Value.(*embeddingSink)
	if k.Secret != "abc" || k.Listen != ":1" || len(k.Hosts) != 1 || k.Hosts[0] != "default" || k.hidden != 7 {
		t.Errorf("decoded %+v", k)
	}
	_, err = Load("x.toml", []byte(`
[sources.s]
type = "pearl_publisher_status"
[sinks.k]
type = "embedding"
inputs = ["s"]
sharedBlock = "x"
`), LoadOptions{Registry: reg})
	if err == nil || !strings.Contains(err.Error(), `unknown key "sinks.k.sharedBlock"`) {
		t.Errorf("the embedded struct itself must not be a key: %v", err)
	}
}

type openSource struct {
	Interval Duration `toml:"interval"`
	Options  Extra
}

func (*openSource) Run(context.Context, func(Event)) error { return nil }

func (o *openSource) Init(*Env) error {
	for k := range o.Options {
		if k != "threshold" {
			return &KeyError{Key: k, Err: errors.New("not declared by the plugin")}
		}
	}
	return nil
}

func TestLoadExtraKeys(t *testing.T) {
	reg := testRegistry()
	reg.Register(KindSource, "open", func() any { return &openSource{} })
	src := `
[sources.o]
type = "open"
interval = "2s"
threshold = 0.25
`
	p, err := Load("x.toml", []byte(src+"[sinks.k]\ntype = \"websocket\"\ninputs = [\"o\"]\nlisten = \"x\"\n"), LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	o := p.Component("o").Value.(*openSource)
	if o.Interval.D() != 2*time.Second || o.Options["threshold"].Value != 0.25 || o.Options["threshold"].Line != 5 {
		t.Fatalf("decoded %+v", o)
	}
	// Unknown keys of components without Extra are still errors.
	_, err = Load("x.toml", []byte(src+"[sinks.k]\ntype = \"websocket\"\ninputs = [\"o\"]\nlistn = \"x\"\n"), LoadOptions{Registry: reg})
	if err == nil || !strings.Contains(err.Error(), `x.toml:9: sinks.k: unknown key "sinks.k.listn"`) {
		t.Fatalf("err = %v", err)
	}
	// Init's KeyError is reported at the key's line.
	p, err = Load("x.toml", []byte(src+"colour = \"red\"\n[sinks.k]\ntype = \"websocket\"\ninputs = [\"o\"]\n"), LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewPipeline(p, Deps{})
	if err == nil || !strings.Contains(err.Error(), `x.toml:6: sources.o: key "colour": not declared by the plugin`) {
		t.Fatalf("err = %v", err)
	}
}
