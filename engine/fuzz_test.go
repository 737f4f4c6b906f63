package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2"
)

// fuzzEnv is the environment of the loader fuzz targets: a few set
// variables, one of them empty; every other name is unset.
var fuzzEnv = envOf(map[string]string{
	"PEARL_PASSWORD": `hunter2-s3"cr'et`,
	"PORT":           "3446",
	"EMPTY":          "",
	"FLAG":           "true",
	"HOST":           "192.168.1.100",
})

// fuzzSettings is a block of keys shared by a component, embedded
// untagged like auth.Config.
type fuzzSettings struct {
	Secret string   `toml:"secret"`
	Leeway Duration `toml:"leeway"`
}

// fuzzPlugin is a source whose schema is partly known only at Init, like
// the plugin source: unknown keys land in Options.
type fuzzPlugin struct {
	fuzzSettings
	Plugin  string `toml:"plugin"`
	Options Extra
}

func (*fuzzPlugin) Run(ctx context.Context, _ func(Event)) error { <-ctx.Done(); return nil }

func fuzzRegistry() *Registry {
	r := testRegistry()
	r.Register(KindSource, "plugin", func() any { return &fuzzPlugin{} })
	return r
}

// FuzzLoad loads arbitrary pipeline files, ${VAR} expansion included.
// Invariants: Load does not panic; it fails with *ConfigError values only,
// each naming the file, a line inside it (or 0) and a message; the same
// input gives the same error text every time (pearld validate prints it),
// which never quotes the value of a variable (a password); a file it
// accepts has components in topological order, sources without inputs,
// every other component with known, non-sink inputs, and devices with an
// address.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		designExample,
		"[devices.a]\naddress = \"${HOST}\"\npassword = \"${PEARL_PASSWORD}\"\n[sources.p]\ntype = \"pearl_publisher_status\"\ninterval = \"${IVL:-5s}\"\n",
		"[sources.p]\ntype = \"pearl_publisher_status\"\ncount = ${N:-3}\nfail = ${FLAG}\n[sinks.s]\ntype = \"websocket\"\ninputs = [\"p\"]\nlisten = \":${PORT}\"\nbuffer = 4\nwhen_full = \"drop_newest\"\n",
		"[sources.q]\ntype = \"plugin\"\nplugin = \"stream_quality\"\nthreshold = 0.1\nsecret = \"x\"\nleeway = \"1s\"\nnested = { a = 1 }\n[sinks.s]\ntype = \"rest_events\"\ninputs = [\"q\"]\n",
		"[processors.a]\ntype = \"dedup\"\ninputs = [\"b\"]\n[processors.b]\ntype = \"dedup\"\ninputs = [\"a\"]\n",
		"[devices.\"192.168.1.100\"]\naddress = \"192.168.1.100\"\n[devices.'b c']\naddress = 'x'\n",
		"sources.p.type = \"pearl_publisher_status\"\nsinks = { s = { type = \"websocket\", inputs = [\"p\"] } }\n",
		"[sources.p]\ntype = \"pearl_publisher_status\"\nintervall = \"5s\"\n[sinks.s]\ntype = \"nope\"\n",
		"[devices.a]\n[devices.b]\n[devices.c]\naddress = \"\"\n",
		"x = \"\"\"\n${PEARL_PASSWORD}\n\"\"\"\ny = '''${HOST}'''\n# ${NOPE}\n",
		"[devices.a]\naddress = \"h\"\npassword = ${PEARL_PASSWORD}\n",
		"[sources.p\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	reg := fuzzRegistry()
	f.Fuzz(func(t *testing.T, src []byte) {
		opts := LoadOptions{Registry: reg, LookupEnv: fuzzEnv}
		p, err := Load("fuzz.toml", src, opts)
		_, err2 := Load("fuzz.toml", src, opts)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("loading twice gave different results:\n%v\n---\n%v", err, err2)
		}
		if err != nil {
			if msg := checkConfigErrors(err, "fuzz.toml", bytes.Count(src, []byte("\n"))+1); msg != "" {
				t.Fatal(msg)
			}
			if strings.Contains(err.Error(), "hunter2") && !bytes.Contains(src, []byte("hunter2")) {
				t.Fatalf("the error quotes the value of PEARL_PASSWORD:\n%v", err)
			}
			return
		}
		if msg := checkPipeline(p); msg != "" {
			t.Fatal(msg)
		}
	})
}

// designExample is the pipeline of DESIGN.md.
const designExample = `[devices.studio-a]
address  = "192.168.1.100"
username = "admin"
password = "${PEARL_PASSWORD}"

[sources.publishers]
type     = "pearl_publisher_status"
devices  = ["*"]
interval = "5s"

[sources.health]
type     = "pearl_device_health"
devices  = ["*"]
interval = "10s"

[processors.changes]
type   = "dedup"
inputs = ["publishers", "health"]

[processors.latest]
type   = "ttl_cache"
inputs = ["changes"]
ttl    = "300s"

[sinks.live]
type   = "websocket"
inputs = ["latest"]
listen = ":3446"

[sinks.api]
type   = "rest_events"
inputs = ["latest"]
listen = ":3446"
`

// checkConfigErrors checks that err joins *ConfigError values only, each
// about file at a line from 0 (unknown) to lines.
func checkConfigErrors(err error, file string, lines int) string {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	if len(list) == 0 {
		return "an error that joins nothing"
	}
	for _, e := range list {
		var ce *ConfigError
		if !errors.As(e, &ce) || ce != e {
			return fmt.Sprintf("error %T is not a *ConfigError: %v", e, e)
		}
		if ce.File != file || ce.Msg == "" || ce.Line < 0 || ce.Line > lines {
			return fmt.Sprintf("error %q: file %q line %d of %d", ce.Error(), ce.File, ce.Line, lines)
		}
	}
	return ""
}

// checkPipeline checks the shape of a loaded pipeline.
func checkPipeline(p *PipelineConfig) string {
	if p.Name != "fuzz" {
		return fmt.Sprintf("pipeline name %q", p.Name)
	}
	pos := map[string]int{}
	for i, c := range p.Components {
		if _, dup := pos[c.Name]; dup {
			return fmt.Sprintf("component %s listed twice", c.Name)
		}
		if !namePattern.MatchString(c.Name) {
			return fmt.Sprintf("component name %q", c.Name)
		}
		if c.Buffer < 1 || (c.WhenFull != whenFullBlock && c.WhenFull != whenFullDropNew) {
			return fmt.Sprintf("%s: buffer %d when_full %q", c.Name, c.Buffer, c.WhenFull)
		}
		if (c.Kind == KindSource) != (len(c.Inputs) == 0) {
			return fmt.Sprintf("%s %s has inputs %q", c.Kind, c.Name, c.Inputs)
		}
		for _, in := range c.Inputs {
			j, ok := pos[in]
			if !ok {
				return fmt.Sprintf("%s: input %q is not before it", c.Name, in)
			}
			if p.Components[j].Kind == KindSink {
				return fmt.Sprintf("%s: input %q is a sink", c.Name, in)
			}
		}
		if err := checkKind(c); err != nil {
			return err.Error()
		}
		pos[c.Name] = i
	}
	for name, d := range p.Devices {
		if d == nil || d.Name != name || strings.TrimSpace(d.Address) == "" || d.Username == "" || d.Timeout <= 0 {
			return fmt.Sprintf("device %q = %+v", name, d)
		}
	}
	return ""
}

// FuzzExpandVars checks that ${VAR} expansion never lets a value change
// the structure of a pipeline file: whatever the value, in whichever kind
// of TOML string the reference stands (basic, literal, multi-line of
// either, from the environment or as a ${VAR:-default}), between whatever
// text, either expansion reports an error, or the file decodes to exactly
// one key whose string is the text with the value in place, byte for
// byte. Outside quotes a value is either refused or decodes to one number
// or boolean. Errors never quote the value: it may be a password.
func FuzzExpandVars(f *testing.F) {
	for _, v := range []string{
		"plain", "", `say "hi" \ now`, "it's", "'''", `"""`, "a\nb", "\na", "a\r\nb", "tab\there",
		"\x00\x1f\x7f", "é ☃ 𝄞", `\u0041`, "${X}", "$${X}", "x\" \nevil = \"1", "x' \nevil = '1",
		"50", "-1_000", "1.5e3", "true", "0x1F", "01", "inf", "1 # c", "'", "''", `"`, "a'", "'a",
	} {
		for kind := range uint8(kinds) {
			f.Add(v, kind, uint8(0))
		}
	}
	f.Add("'x", uint8(kindMultiLiteral), uint8(3))     // '' before 'x: three quotes
	f.Add("x'", uint8(kindMultiLiteral), uint8(3*6+1)) // x' before '': three quotes
	f.Add("\nx", uint8(kindMultiLiteral), uint8(1))    // not at the start: kept
	f.Add(`x"`, uint8(kindMultiBasic), uint8(5*6+5))   // escaped, whatever surrounds it
	f.Fuzz(func(t *testing.T, value string, kind, affix uint8) {
		if !utf8.ValidString(value) {
			t.Skip("TOML files and environment values are UTF-8")
		}
		k := int(kind) % kinds
		before, after := affixes[int(affix)%len(affixes)], affixes[int(affix)/len(affixes)%len(affixes)]
		if k == kindBare {
			before, after = "", ""
		} else if !validAround(before, after, k) {
			t.Skip("the text around the reference is not a string of its own")
		}
		src, lookup, ok := expandCase(before, value, after, k)
		if !ok {
			t.Skip("a default cannot hold '}' or a newline")
		}
		out, errs := expandVars([]byte(src), lookup)
		if len(errs) > 0 {
			for _, e := range errs {
				if e.line != 1 || e.msg == "" {
					t.Fatalf("error %+v for a one-line reference", e)
				}
				// The messages' own words hold no digit: a value from the
				// environment with one that shows in a message was quoted.
				if len(value) >= 4 && strings.ContainsAny(value, "0123456789") && !strings.Contains(src, value) && strings.Contains(e.msg, value) {
					t.Fatalf("error %q quotes the value", e.msg)
				}
			}
			return
		}
		var doc map[string]any
		err := toml.Unmarshal(out, &doc)
		if k == kindBare {
			if err != nil {
				return // refused by the decoder, at its line
			}
			v, isScalar := doc["k"]
			switch v.(type) {
			case int64, float64, bool:
			default:
				isScalar = false
			}
			if len(doc) != 1 || !isScalar {
				t.Fatalf("%q outside quotes became %q, which decodes to %#v", value, out, doc)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q in %s expanded without error to %q, which does not decode: %v", value, kindNames[k], out, err)
		}
		if want := before + value + after; len(doc) != 1 || doc["k"] != want {
			t.Fatalf("%q in %s expanded to %q, which decodes to %#v, want %q", value, kindNames[k], out, doc, want)
		}
	})
}

// affixes are the texts FuzzExpandVars puts around a reference.
var affixes = [...]string{"", "x", "'", "''", `"`, `""`}

// Kinds of reference in FuzzExpandVars.
const (
	kindBasic = iota
	kindLiteral
	kindMultiBasic
	kindMultiLiteral
	kindDefaultBasic
	kindDefaultLiteral
	kindBare
	kinds
)

var kindNames = [...]string{"a basic string", "a literal string", "a multi-line basic string",
	"a multi-line literal string", "a default in a basic string", "a default in a literal string", "no string"}

var kindQuotes = [...]string{`"`, `'`, `"""`, `'''`, `"`, `'`}

// expandCase returns a one-line document with a reference to value of the
// given kind between before and after, and the environment it expands in.
func expandCase(before, value, after string, kind int) (src string, lookup func(string) (string, bool), ok bool) {
	if kind == kindBare {
		return `k = ${V}`, envOf(map[string]string{"V": value}), true
	}
	ref, env := "${V}", envOf(map[string]string{"V": value})
	if kind == kindDefaultBasic || kind == kindDefaultLiteral {
		if value == "" || strings.ContainsAny(value, "}\n") {
			return "", nil, false
		}
		ref, env = "${UNSET:-"+value+"}", envOf(nil)
	}
	q := kindQuotes[kind]
	return "k = " + q + before + ref + after + q, env, true
}

// validAround reports whether before and after, with nothing between them,
// make a string of the kind that decodes to before+after.
func validAround(before, after string, kind int) bool {
	q := kindQuotes[kind]
	var doc map[string]any
	return toml.Unmarshal([]byte("k = "+q+before+after+q), &doc) == nil && doc["k"] == before+after
}

// TestFuzzFindings pins down what FuzzLoad and FuzzExpandVars found.
func TestFuzzFindings(t *testing.T) {
	t.Run("device errors in a stable order", func(t *testing.T) {
		src := []byte("[devices.c]\n[devices.a]\n[devices.b]\n[devices.d]\n")
		_, first := Load("x.toml", src, LoadOptions{Registry: testRegistry(), LookupEnv: fuzzEnv})
		want := "x.toml:2: devices.a: missing address\nx.toml:3: devices.b: missing address\n" +
			"x.toml:1: devices.c: missing address\nx.toml:4: devices.d: missing address"
		for range 20 {
			_, err := Load("x.toml", src, LoadOptions{Registry: testRegistry(), LookupEnv: fuzzEnv})
			if err == nil || err.Error() != want || first.Error() != want {
				t.Fatalf("errors\n%v\nwant\n%s", err, want)
			}
		}
	})
	t.Run("a value outside quotes is not quoted in the error", func(t *testing.T) {
		_, err := Load("x.toml", []byte("[devices.a]\naddress = \"h\"\npassword = ${PEARL_PASSWORD}\n"),
			LoadOptions{Registry: testRegistry(), LookupEnv: fuzzEnv})
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "x.toml:3: ${PEARL_PASSWORD} outside quotes") {
			t.Fatalf("error %v", err)
		}
	})
	for _, tt := range []struct {
		name, src, value string
		ok               bool
	}{
		{"leading newline of a multi-line literal", "k = '''${V}'''", "\nx", false},
		{"newline inside a multi-line literal", "k = '''a${V}'''", "\nx", true},
		{"control character in a literal", "k = '${V}'", "a\x01b", false},
		{"carriage return in a multi-line literal", "k = '''${V}'''", "a\rb", false},
		{"quote that makes three with the text before", "k = '''''${V}'''", "'x", false},
		{"quote that makes three with the text after", "k = '''${V}'''''", "x'", false},
		{"quotes inside a multi-line literal", "k = '''${V}'''", "a''b", true},
		{"control character in a basic string", `k = "${V}"`, "a\x01\x7fb", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, errs := expandVars([]byte(tt.src), envOf(map[string]string{"V": tt.value}))
			if !tt.ok {
				if len(errs) == 0 {
					t.Fatalf("expanded to %q, want an error", out)
				}
				return
			}
			var doc map[string]any
			if len(errs) > 0 || toml.Unmarshal(out, &doc) != nil || !strings.Contains(doc["k"].(string), tt.value) {
				t.Fatalf("expanded to %q (%v), decodes to %#v", out, errs, doc)
			}
		})
	}
}
