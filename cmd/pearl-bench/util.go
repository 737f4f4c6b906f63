package main

import (
	"encoding/json"
	"flag"
	"strings"
	"time"

	"github.com/pearld/pearld/engine/auth"
)

// authRead is what a dashboard's token grants.
var authRead = auth.Permissions{RealtimeData: true}

// structParams turns a params struct into the map of its JSON fields.
func structParams(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// Dur is a duration flag that reads and prints as "5s" in JSON too.
type Dur time.Duration

// D returns d as a time.Duration.
func (d Dur) D() time.Duration { return time.Duration(d) }

func (d Dur) String() string { return time.Duration(d).String() }

// Set parses a flag value.
func (d *Dur) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Dur(v)
	return nil
}

// MarshalText prints the duration like time.Duration.String.
func (d Dur) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// durVar registers a Dur flag.
func durVar(fs *flag.FlagSet, d *Dur, name string, def time.Duration, usage string) {
	*d = Dur(def)
	fs.Var(d, name, usage)
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
