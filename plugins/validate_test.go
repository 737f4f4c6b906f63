package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
)

// validate loads and initialises a pipeline as `pearld validate` does.
func validate(t *testing.T, src string) (string, error) {
	t.Helper()
	file := writeFile(t, "test.toml", src)
	e := engine.New(engine.Options{Registry: registry(&recorder{})})
	return file, e.Validate([]string{file})
}

func TestValidate(t *testing.T) {
	const head = `[devices.d]
address = "127.0.0.1:1"

[sinks.out]
type   = "record"
inputs = ["q"]

[sources.q]
type   = "plugin"
`
	tests := []struct {
		name, table, want string
	}{
		{"valid", "plugin = \"counter\"\nstep = 2\nlabel = \"x\"\n", ""},
		{"unknown key", "plugin = \"counter\"\nlabel = \"x\"\nstepp = 2\n", `:12: sources.q: key "stepp": unknown option of plugin "counter" (it declares: label, step)`},
		{"wrong type", "plugin = \"counter\"\n\nstep = \"two\"\n", `:12: sources.q: key "step": want an int, got the string "two"`},
		{"rejected value", "plugin = \"counter\"\nstep = 0\n", `:11: sources.q: key "step": must be at least 1, not 0`},
		{"float for int", "plugin = \"counter\"\nstep = 1.5\n", `:11: sources.q: key "step": want an integer, got 1.5`},
		{"unknown plugin", "plugin = \"nope\"\n", `:8: sources.q: plugin "nope" not found in ` + pluginsDir + ` (found: counter, crashy, freeze, hang, junk, stream_quality)`},
		{"bad name", "plugin = \"../counter\"\n", `plugin name "../counter": use 1-64 of a-z 0-9 _`},
		{"no plugin", "step = 1\n", `missing plugin: name the plugin binary`},
		{"stream_quality threshold", "plugin = \"stream_quality\"\nthreshold = -1\n", `:11: sources.q: key "threshold": must be above 0`},
		{"bad pin", "plugin = \"counter\"\nsha256 = \"abc\"\n", `sha256 must be the 64 hex digits`},
		{"interval", "plugin = \"counter\"\ninterval = \"0s\"\n", `interval must be positive`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file, err := validate(t, head+tt.table)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want == "":
			case err == nil:
				t.Fatalf("no error, want %q", tt.want)
			case !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error\n%v\ndoes not contain\n%s", err, tt.want)
			case strings.HasPrefix(tt.want, ":") && !strings.HasPrefix(err.Error(), file+tt.want[:strings.Index(tt.want[1:], ":")+1]):
				t.Fatalf("error %v does not start with the file and line", err)
			}
		})
	}
}

func TestChecksumPin(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(pluginsDir, "counter"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	good := hex.EncodeToString(sum[:])
	bad := strings.Repeat("0", 64)
	src := `[devices.d]
address = "127.0.0.1:1"

[sinks.out]
type   = "record"
inputs = ["q"]

[sources.q]
type   = "plugin"
plugin = "counter"
sha256 = "%s"
`
	if _, err := validate(t, fmt.Sprintf(src, good)); err != nil {
		t.Fatalf("the right pin: %v", err)
	}
	_, err = validate(t, fmt.Sprintf(src, bad))
	if err == nil {
		t.Fatal("a wrong pin was accepted")
	}
	want := "plugin binary does not match its sha256 pin: " + filepath.Join(pluginsDir, "counter") + " has sha256 " + good + ", the pipeline pins " + bad
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error\n%v\ndoes not contain\n%s", err, want)
	}
	// The pin is checked at every start too: the binary may be replaced.
	path := filepath.Join(t.TempDir(), "counter")
	if err := os.WriteFile(path, b, 0o700); err != nil {
		t.Fatal(err)
	}
	junk := &junkReporter{log: slog.New(slog.DiscardHandler), count: func(string) {}}
	p, err := launch(context.Background(), launchOptions{name: "counter", path: path, pin: sum[:], log: junk.log, junk: junk})
	if err != nil {
		t.Fatal(err)
	}
	p.kill()
	if err := os.WriteFile(path, append(b, 0), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := launch(context.Background(), launchOptions{name: "counter", path: path, pin: sum[:], log: junk.log, junk: junk}); !errors.Is(err, ErrChecksum) {
		t.Fatalf("starting a replaced binary: %v, want ErrChecksum", err)
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestJunkAndLogs: what a plugin prints to stdout is reported, not fatal;
// what it logs reaches pearld's log at its level.
func TestJunkAndLogs(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(&logs), &slog.HandlerOptions{Level: slog.LevelInfo}))
	rec := &recorder{}
	e := startEngine(t, `
[devices.d]
address = "127.0.0.1:1"

[sources.junk]
type     = "plugin"
plugin   = "junk"
interval = "50ms"
step     = 3

[sinks.out]
type   = "record"
inputs = ["junk"]
`, rec, log)
	waitFor(t, "events of the junk plugin", 10*time.Second, func() bool { return len(rec.events("test_counter")) >= 3 })
	waitFor(t, "the junk in the log", 5*time.Second, func() bool {
		s := logs.String()
		return strings.Contains(s, `"line":"hello from a plugin that prints before serving"`) &&
			strings.Contains(s, `"line":"junk in a poll of d"`)
	})
	for _, want := range []string{
		`"level":"WARN","msg":"plugin wrote to stdout; plugins should log with the sdk's logger","pipeline":"test","component":"junk","type":"plugin","plugin":"junk"`,
		`"level":"INFO","msg":"configured"`,
		`"step":3`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, logs.String())
		}
	}
	if c := component(e, "junk"); c.Restarts != 0 {
		t.Errorf("the junk plugin was restarted: %+v", c)
	}
}

func TestList(t *testing.T) {
	ds, err := List(context.Background(), pluginsDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, " "); got != "counter crashy freeze hang junk stream_quality" {
		t.Fatalf("plugins = %s", got)
	}
	sq := ds[len(ds)-1]
	if sq.Version == "" || len(sq.DataTypes) != 1 || sq.DataTypes[0] != "stream_quality" || len(sq.Fields) != 1 || sq.Fields[0].Name != "threshold" || sq.Fields[0].Type != "float" || sq.Fields[0].Default != "0.1" {
		t.Fatalf("stream_quality = %+v", sq)
	}
}
