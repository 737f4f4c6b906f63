package pearl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Tolerant JSON scalars. Each accepts null as "not set" (a no-op, as
// encoding/json does for plain types).

// flexString is a string that may arrive as a JSON number or boolean, as
// ids do on some firmware.
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		return nil
	case b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'), string(b) == "true", string(b) == "false":
		*s = flexString(b)
	default:
		return fmt.Errorf("want a string, got %.20s", b)
	}
	return nil
}

// flexInt is an integer that may arrive as a float or a numeric string.
type flexInt int64

func (n *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	text := string(b)
	if b[0] == '"' {
		if err := json.Unmarshal(b, &text); err != nil {
			return err
		}
		text = strings.TrimSpace(text)
		if text == "" {
			*n = 0
			return nil
		}
	}
	v, err := parseInt(text)
	if err != nil {
		return err
	}
	*n = flexInt(v)
	return nil
}

// parseInt parses an integer, or a float that it truncates.
func parseInt(s string) (int64, error) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, fmt.Errorf("want an integer, got %.20q", s)
	}
	return int64(f), nil
}

// flexBool is a boolean that may arrive as 0/1 or as a string.
type flexBool bool

func (v *flexBool) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch s := string(b); {
	case s == "" || s == "null":
		return nil
	case s == "true", s == "false":
		*v = s == "true"
	case b[0] == '"':
		var text string
		if err := json.Unmarshal(b, &text); err != nil {
			return err
		}
		parsed, err := strconv.ParseBool(strings.TrimSpace(text))
		if err != nil {
			return fmt.Errorf("want a boolean, got %.20q", text)
		}
		*v = flexBool(parsed)
	default:
		n, err := parseInt(s)
		if err != nil {
			return fmt.Errorf("want a boolean, got %.20s", b)
		}
		*v = n != 0
	}
	return nil
}

// flexDate is a device clock reading: an ISO-8601 string on some
// firmware, an epoch number (seconds, or milliseconds) on others. A value
// that is neither decodes as the zero time rather than failing: the date
// is informational.
type flexDate time.Time

// epochMillisAbove is where epoch numbers are taken as milliseconds: as
// seconds it would be the year 5138.
const epochMillisAbove = 1e11

var dateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
}

func (d *flexDate) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	text := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &text); err != nil {
			return err
		}
		text = strings.TrimSpace(text)
		for _, layout := range dateLayouts {
			if t, err := time.Parse(layout, text); err == nil {
				*d = flexDate(t)
				return nil
			}
		}
	}
	if n, err := parseInt(text); err == nil {
		if n > epochMillisAbove {
			*d = flexDate(time.UnixMilli(n).UTC())
		} else {
			*d = flexDate(time.Unix(n, 0).UTC())
		}
	}
	return nil
}

// flexWarnings is a publisher's warnings: objects with a text, or plain
// strings. Anything else is ignored rather than failing the status: the
// warnings do not define a publisher's state.
type flexWarnings []PublisherWarning

func (w *flexWarnings) UnmarshalJSON(b []byte) error {
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		*w = nil
		return nil
	}
	out := make(flexWarnings, 0, len(items))
	for _, item := range items {
		var text string
		if json.Unmarshal(item, &text) == nil {
			out = append(out, PublisherWarning{Text: text})
			continue
		}
		var obj struct {
			Text flexString `json:"text"`
		}
		if json.Unmarshal(item, &obj) == nil {
			out = append(out, PublisherWarning{Text: string(obj.Text)})
		}
	}
	*w = out
	return nil
}
