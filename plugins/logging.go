package plugins

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter is the hclog.Logger go-plugin logs with, writing into
// pearld's slog logger: go-plugin's own messages, and the records a plugin
// writes to its stderr (the sdk writes them as hclog JSON lines, which
// go-plugin parses and logs here at their level).
type hclogAdapter struct {
	log     *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHclogAdapter(log *slog.Logger) *hclogAdapter { return &hclogAdapter{log: log} }

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	l := slogLevel(level)
	if !a.log.Enabled(context.Background(), l) {
		return
	}
	attrs := make([]any, 0, len(a.implied)+len(args))
	attrs = append(attrs, a.implied...)
	for i := 0; i+1 < len(args); i += 2 {
		// go-plugin appends the plugin's own timestamp to the records it
		// forwards; slog has the time already.
		if k, _ := args[i].(string); k == "timestamp" {
			continue
		}
		attrs = append(attrs, args[i], args[i+1])
	}
	if len(args)%2 == 1 {
		attrs = append(attrs, "extra", args[len(args)-1])
	}
	a.log.Log(context.Background(), l, msg, attrs...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return a.log.Enabled(context.Background(), slogLevel(l))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.implied = append(append([]any(nil), a.implied...), args...)
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }

// Named is how go-plugin tags the records of a plugin's stderr (with the
// binary's file name); the component's logger already names the plugin.
func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

// SetLevel is a no-op: pearld's handler decides.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

// GetLevel returns the lowest level pearld's handler logs, so go-plugin
// skips parsing records that would be dropped.
func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineWriter{line: func(b []byte) { a.Info(string(b)) }}
}

// levelName is the value of sdk.EnvLogLevel for the lowest level log
// handles.
func levelName(log *slog.Logger) string {
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if log.Enabled(context.Background(), l) {
			return strings.ToLower(l.String())
		}
	}
	return "error"
}

// lineWriter calls line for every complete line written to it (without
// the newline); a line longer than maxLine is cut. Safe for concurrent
// use.
type lineWriter struct {
	line func([]byte)
	mu   sync.Mutex
	buf  []byte
}

const maxLine = 4 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p[:min(len(p), max(0, maxLine-len(w.buf)))]...)
			break
		}
		w.buf = append(w.buf, p[:min(i, max(0, maxLine-len(w.buf)))]...)
		w.line(bytes.TrimRight(w.buf, "\r"))
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// junkReporter logs what a plugin writes to stdout, which is not part of
// the protocol, as warnings, at most burst lines per window, and counts
// every line.
type junkReporter struct {
	log   *slog.Logger
	count func(stream string)

	mu     sync.Mutex
	window time.Time
	n      int
}

const (
	junkBurst  = 10
	junkWindow = 10 * time.Second
)

func (j *junkReporter) report(stream string, line []byte) {
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	j.count(stream)
	j.mu.Lock()
	now := time.Now()
	if now.Sub(j.window) > junkWindow {
		j.window, j.n = now, 0
	}
	j.n++
	n := j.n
	j.mu.Unlock()
	switch {
	case n <= junkBurst:
		j.log.Warn("plugin wrote to "+stream+"; plugins should log with the sdk's logger", "line", string(line))
	case n == junkBurst+1:
		j.log.Warn("plugin keeps writing to " + stream + "; further lines are only counted for a while")
	}
}
