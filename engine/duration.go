package engine

import (
	"fmt"
	"time"
)

// Duration is a time.Duration written in pipeline files as a Go duration
// string ("250ms", "5s", "1m30s").
type Duration time.Duration

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("parsing duration %q: want a number with a unit such as 500ms, 5s or 1m", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats the duration like time.Duration.String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration like time.Duration.String.
func (d Duration) String() string { return time.Duration(d).String() }
