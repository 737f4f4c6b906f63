package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// ComponentConfig is one decoded [sources|processors|sinks.NAME] table.
type ComponentConfig struct {
	Kind   Kind
	Name   string
	Type   string
	Inputs []string
	// Buffer is the capacity, in batches, of the component's input queue.
	Buffer int
	// WhenFull is "block" (default) or "drop_newest".
	WhenFull string
	// Line is where the component's table starts in its file.
	Line int
	// Value is the component itself, decoded from its table.
	Value any
	// Fingerprint identifies the table's content (after ${VAR} expansion):
	// equal fingerprints mean equal configuration, so a reload keeps the
	// component.
	Fingerprint string
}

// PipelineConfig is one decoded and validated pipeline file.
type PipelineConfig struct {
	Name       string
	File       string
	Devices    map[string]*Device
	Components []*ComponentConfig // topological order: every component after its inputs
	// DevicesFingerprint identifies the [devices] tables' content.
	DevicesFingerprint string
}

// Component returns the named component's config, or nil.
func (p *PipelineConfig) Component(name string) *ComponentConfig {
	for _, c := range p.Components {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// ConfigError is one problem in a pipeline file.
type ConfigError struct {
	File      string
	Line      int    // 0 when unknown
	Component string // "sources.publishers", "devices.studio-a", or ""
	Msg       string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Component != "" {
		b.WriteString(e.Component)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

type lineError struct {
	line int
	msg  string
}

// LoadOptions tune LoadFile.
type LoadOptions struct {
	// Registry resolves type names; nil means DefaultRegistry().
	Registry *Registry
	// LookupEnv resolves ${VAR}; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

var (
	namePattern     = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)
	deviceIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

const (
	defaultBuffer   = 256
	whenFullBlock   = "block"
	whenFullDropNew = "drop_newest"
)

// LoadFile reads, decodes and validates one pipeline file. On failure the
// error is an errors.Join of *ConfigError, one per problem found.
func LoadFile(path string, opts LoadOptions) (*PipelineConfig, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("reading pipeline: %v", err)}
	}
	return Load(path, src, opts)
}

// Load decodes and validates a pipeline given as bytes; file names it in
// errors and gives the pipeline its name.
func Load(file string, src []byte, opts LoadOptions) (*PipelineConfig, error) {
	reg := opts.Registry
	if reg == nil {
		reg = defaultRegistry
	}
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var errs []error
	fail := func(line int, comp, format string, args ...any) {
		errs = append(errs, &ConfigError{File: file, Line: line, Component: comp, Msg: fmt.Sprintf(format, args...)})
	}

	src, verrs := expandVars(src, lookup)
	for _, e := range verrs {
		fail(e.line, "", "%s", e.msg)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	lines := tableLines(src)

	// Pass 1: the shape of the file and each component's type.
	var raw struct {
		Devices    map[string]map[string]any `toml:"devices"`
		Sources    map[string]map[string]any `toml:"sources"`
		Processors map[string]map[string]any `toml:"processors"`
		Sinks      map[string]map[string]any `toml:"sinks"`
	}
	if err := strictDecode(src, &raw); err != nil {
		return nil, errors.Join(decodeErrors(file, err)...)
	}

	p := &PipelineConfig{
		Name:               PipelineName(file),
		File:               file,
		Devices:            map[string]*Device{},
		DevicesFingerprint: fingerprint(raw.Devices),
	}
	byName := map[string]*ComponentConfig{}
	var comps []*ComponentConfig
	kinds := []struct {
		kind  Kind
		what  string
		items map[string]map[string]any
	}{{KindSource, "source", raw.Sources}, {KindProcessor, "processor", raw.Processors}, {KindSink, "sink", raw.Sinks}}
	for _, k := range kinds {
		for _, name := range sortedKeys(k.items) {
			id := string(k.kind) + "." + name
			line := lines[id]
			if !namePattern.MatchString(name) {
				fail(line, id, "invalid name: use 1-64 of A-Z a-z 0-9 . _ : -")
				continue
			}
			if other, dup := byName[name]; dup {
				fail(line, id, "name already used by %s.%s", other.Kind, name)
				continue
			}
			typ, _ := k.items[name]["type"].(string)
			if typ == "" {
				fail(line, id, "missing type")
				continue
			}
			f, ok := reg.Lookup(k.kind, typ)
			if !ok {
				fail(line, id, "unknown %s type %q (known: %s)", k.what, typ, strings.Join(reg.Types(k.kind), ", "))
				continue
			}
			v := f()
			if rv := reflect.ValueOf(v); rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
				fail(line, id, "%s type %q is broken: its factory returned %T, not a pointer to a struct", k.what, typ, v)
				continue
			}
			c := &ComponentConfig{Kind: k.kind, Name: name, Type: typ, Line: line, Value: v, Buffer: defaultBuffer, WhenFull: whenFullBlock, Fingerprint: fingerprint(k.items[name])}
			byName[name] = c
			comps = append(comps, c)
		}
	}
	for _, name := range sortedKeys(raw.Devices) {
		// ':' separates the parts of subscription keys, so a device id
		// holding one would make keys of two devices collide.
		if !deviceIDPattern.MatchString(name) {
			fail(lines["devices."+name], "devices."+name, "invalid device id: use 1-64 of A-Z a-z 0-9 . _ - (no ':', it separates the parts of subscription keys)")
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	// Pass 2: decode everything strictly into the components' own structs.
	doc, wrappers := buildDocument(comps)
	if err := strictDecode(src, doc.Addr().Interface()); err != nil {
		rest := collectExtra(err, byName, wrappers, kinds[0].items, kinds[1].items, kinds[2].items)
		if rest != nil {
			return nil, errors.Join(decodeErrors(file, rest)...)
		}
	}
	devices := doc.FieldByName("Devices").Interface().(map[string]*Device)
	for _, name := range sortedKeys(devices) { // sorted: errors in a stable order
		d := devices[name]
		id := "devices." + name
		if d == nil {
			d = &Device{}
		}
		d.Name = name
		if d.Username == "" {
			d.Username = "admin"
		}
		if d.Timeout == 0 {
			d.Timeout = Duration(5e9)
		}
		if strings.TrimSpace(d.Address) == "" {
			fail(lines[id], id, "missing address")
		}
		p.Devices[name] = d
	}
	for _, c := range comps {
		w := wrappers[c.Name]
		w.copyBack()
		if c.Kind != KindSource {
			c.Inputs = w.val.FieldByName("Inputs").Interface().([]string)
			if b := w.val.FieldByName("Buffer").Interface().(int); b != 0 {
				c.Buffer = b
			}
			if wf := w.val.FieldByName("WhenFull").Interface().(string); wf != "" {
				c.WhenFull = wf
			}
		}
		id := string(c.Kind) + "." + c.Name
		if c.Buffer < 1 {
			fail(c.Line, id, "buffer must be at least 1")
		}
		if c.WhenFull != whenFullBlock && c.WhenFull != whenFullDropNew {
			fail(c.Line, id, "when_full must be %q or %q, not %q", whenFullBlock, whenFullDropNew, c.WhenFull)
		}
		if err := checkKind(c); err != nil {
			fail(c.Line, id, "%v", err)
		}
	}

	// The graph.
	for _, c := range comps {
		id := string(c.Kind) + "." + c.Name
		if c.Kind != KindSource && len(c.Inputs) == 0 {
			fail(c.Line, id, "missing inputs")
		}
		for _, in := range c.Inputs {
			up, ok := byName[in]
			switch {
			case !ok:
				fail(c.Line, id, "unknown input %q", in)
			case up.Kind == KindSink:
				fail(c.Line, id, "input %q is a sink; sinks have no outputs", in)
			case in == c.Name:
				fail(c.Line, id, "cycle: %s takes its own output as input", c.Name)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	order, cycle := topoSort(comps, byName)
	if cycle != nil {
		first := byName[cycle[0]]
		fail(first.Line, string(first.Kind)+"."+first.Name, "cycle: %s", strings.Join(cycle, " -> "))
		return nil, errors.Join(errs...)
	}
	p.Components = order
	return p, nil
}

// Extra collects the keys of a component's table that its struct does not
// declare. A component whose schema is only known in Init (a plugin's
// options) declares a field of this type; the loader fills it instead of
// reporting those keys as unknown. Init checks them and reports a bad one
// with a *KeyError, which the engine turns into an error at the key's line.
type Extra map[string]ExtraValue

// ExtraValue is one undeclared key: its decoded TOML value and its line.
type ExtraValue struct {
	Value any
	Line  int
}

// KeyError is an error about one key of a component's table. Returned from
// Init, it is reported at the key's line when the loader knows it.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return fmt.Sprintf("key %q: %v", e.Key, e.Err) }
func (e *KeyError) Unwrap() error { return e.Err }

// collectExtra moves unknown top-level keys of components that declare an
// Extra field into it. It returns the decode error that remains, or nil.
func collectExtra(err error, byName map[string]*ComponentConfig, wrappers map[string]*wrapper, raws ...map[string]map[string]any) error {
	var strict *toml.StrictMissingError
	if !errors.As(err, &strict) {
		return err
	}
	raw := func(kind Kind, name string) map[string]any {
		switch kind {
		case KindSource:
			return raws[0][name]
		case KindProcessor:
			return raws[1][name]
		default:
			return raws[2][name]
		}
	}
	var left []toml.DecodeError
	for _, e := range strict.Errors {
		key := e.Key()
		if len(key) >= 3 {
			if c := byName[key[1]]; c != nil && string(c.Kind) == key[0] && wrappers[c.Name].extra != nil {
				w := wrappers[c.Name]
				ex := w.target.FieldByIndex(w.extra)
				if ex.IsNil() {
					ex.Set(reflect.ValueOf(Extra{}))
				}
				line, _ := e.Position()
				if _, seen := ex.Interface().(Extra)[key[2]]; !seen {
					ex.SetMapIndex(reflect.ValueOf(key[2]), reflect.ValueOf(ExtraValue{Value: raw(c.Kind, c.Name)[key[2]], Line: line}))
				}
				continue
			}
		}
		left = append(left, e)
	}
	if len(left) == 0 {
		return nil
	}
	strict.Errors = left
	return strict
}

// PipelineName is the name of the pipeline a file holds: its base name
// without the extension.
func PipelineName(file string) string {
	return strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
}

// fingerprint is a canonical form of a decoded TOML table (encoding/json
// sorts map keys).
func fingerprint(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("unencodable:%v", err)
	}
	return string(b)
}

func checkKind(c *ComponentConfig) error {
	switch c.Kind {
	case KindSource:
		if _, ok := c.Value.(Source); !ok {
			return fmt.Errorf("type %q does not implement Source", c.Type)
		}
	case KindProcessor:
		if _, ok := c.Value.(Processor); !ok {
			return fmt.Errorf("type %q does not implement Processor", c.Type)
		}
	case KindSink:
		if _, ok := c.Value.(Sink); !ok {
			return fmt.Errorf("type %q does not implement Sink", c.Type)
		}
	}
	return nil
}

func strictDecode(src []byte, v any) error {
	d := toml.NewDecoder(bytes.NewReader(src))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func decodeErrors(file string, err error) []error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		out := make([]error, 0, len(strict.Errors))
		for _, e := range strict.Errors {
			line, _ := e.Position()
			key := strings.Join(e.Key(), ".")
			out = append(out, &ConfigError{File: file, Line: line, Component: componentOf(e.Key()), Msg: fmt.Sprintf("unknown key %q", key)})
		}
		return out
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		return []error{&ConfigError{File: file, Line: line, Component: componentOf(de.Key()), Msg: cleanDecodeMsg(de.Error())}}
	}
	return []error{&ConfigError{File: file, Msg: cleanDecodeMsg(err.Error())}}
}

func cleanDecodeMsg(s string) string {
	s = strings.TrimPrefix(s, "toml: ")
	return s
}

func componentOf(key toml.Key) string {
	if len(key) >= 2 {
		switch key[0] {
		case "devices", "sources", "processors", "sinks":
			return key[0] + "." + key[1]
		}
	}
	return ""
}

// tableLines finds the line of every [kind.name] header (and of inline or
// dotted definitions, as a fallback, the first line mentioning them).
var headerPattern = regexp.MustCompile(`(?m)^\s*\[\s*(devices|sources|processors|sinks)\s*\.\s*("([^"]*)"|'([^']*)'|[A-Za-z0-9_-]+)\s*\]`)

func tableLines(src []byte) map[string]int {
	out := map[string]int{}
	for _, m := range headerPattern.FindAllSubmatchIndex(src, -1) {
		kind := string(src[m[2]:m[3]])
		name := string(src[m[4]:m[5]])
		switch {
		case m[6] >= 0:
			name = string(src[m[6]:m[7]])
		case m[8] >= 0:
			name = string(src[m[8]:m[9]])
		}
		id := kind + "." + name
		if _, ok := out[id]; !ok {
			out[id] = 1 + bytes.Count(src[:m[0]], []byte("\n"))
			if src[m[0]] == '\n' {
				out[id]++
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// topoSort orders components so every one comes after its inputs. On a
// cycle it returns the names along it.
func topoSort(comps []*ComponentConfig, byName map[string]*ComponentConfig) ([]*ComponentConfig, []string) {
	const (
		unseen = iota
		active
		done
	)
	state := map[string]int{}
	var order []*ComponentConfig
	var stack []string
	var cycle []string
	var visit func(c *ComponentConfig) bool
	visit = func(c *ComponentConfig) bool {
		switch state[c.Name] {
		case done:
			return true
		case active:
			i := len(stack) - 1
			for i > 0 && stack[i] != c.Name {
				i--
			}
			cycle = append(append([]string{}, stack[i:]...), c.Name)
			return false
		}
		state[c.Name] = active
		stack = append(stack, c.Name)
		for _, in := range c.Inputs {
			if !visit(byName[in]) {
				return false
			}
		}
		stack = stack[:len(stack)-1]
		state[c.Name] = done
		order = append(order, c)
		return true
	}
	for _, c := range comps {
		if !visit(c) {
			return nil, cycle
		}
	}
	return order, nil
}
