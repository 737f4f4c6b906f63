package pearl

import (
	"encoding/json"
	"fmt"
	"time"
)

// isoLayout is how event data writes times: ISO-8601 in UTC with
// milliseconds, "2026-11-25T20:31:12.345Z".
const isoLayout = "2006-01-02T15:04:05.000Z"

func isoTime(t time.Time) string { return t.UTC().Format(isoLayout) }

// mustMarshal encodes event data. The data types of this package hold only
// strings, numbers, booleans and slices of them, so encoding cannot fail;
// a failure is a programming error.
func mustMarshal(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("pearl: encoding %T: %v", v, err))
	}
	return b
}
