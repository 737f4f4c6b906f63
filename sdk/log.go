package sdk

import (
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// EnvLogLevel is the environment variable in which pearld tells a plugin
// the lowest level it logs (debug, info, warn or error), so that the
// plugin does not write records pearld would drop.
const EnvLogLevel = "PEARLD_PLUGIN_LOG_LEVEL"

// hclogTimeFormat is the timestamp layout go-plugin's host parses.
const hclogTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// levelTrace is the slog level of hclog's trace.
const levelTrace = slog.LevelDebug - 4

func levelFromEnv() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv(EnvLogLevel))); err != nil {
		return slog.LevelInfo
	}
	return l
}

// newLogHandler returns a slog handler that writes the JSON lines
// go-plugin's host parses from a plugin's stderr (hclog's format:
// @level, @message, @timestamp and the attributes), so that pearld logs
// each record at its level with its attributes.
func newLogHandler(w io.Writer, level slog.Level) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format(hclogTimeFormat))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			case slog.LevelKey:
				return slog.String("@level", hclogLevel(a.Value.Any().(slog.Level)))
			}
			return a
		},
	})
}

func hclogLevel(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	}
	return "error"
}

// hclogFor returns the hclog logger go-plugin's server logs with, in the
// same format at the level pearld asked for.
func hclogFor(w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Level:      hclog.LevelFromString(strings.ToLower(hclogLevel(levelFromEnv()))),
		Output:     w,
		JSONFormat: true,
	})
}
