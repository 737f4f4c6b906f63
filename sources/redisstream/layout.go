package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pearld/pearld/engine"
)

// Keys names the Redis keys of one pipeline's cluster data. Every key
// starts with the prefix, so that several pipelines, or several clusters,
// can share a Redis server:
//
//	PREFIX:events          stream of every event (XADD MAXLEN ~ max_len)
//	PREFIX:history:KEY     stream of the events of one subscription key, with
//	                       the ids they have in PREFIX:events (MAXLEN ~ history)
//	PREFIX:latest:DEVICE   hash: subscription key -> latest event, as a Record
//	PREFIX:devices         set of the devices that have a PREFIX:latest hash
//	PREFIX:lease:DEVICE    poll lease of a device (pearl sources): the holder's token
//	PREFIX:kicks           pub/sub channel: "TOKEN DEVICE" asks the holder of a
//	                       device's lease to poll it now
type Keys struct {
	Prefix string
}

// DefaultPrefix is the prefix of a pipeline's keys when none is configured.
func DefaultPrefix(pipeline string) string { return "pearld:" + pipeline }

// Stream is the stream of every event.
func (k Keys) Stream() string { return k.Prefix + ":events" }

// History is the stream of the events of one subscription key.
func (k Keys) History(key string) string { return k.Prefix + ":history:" + key }

// Latest is the hash of a device's latest events, one per subscription key.
func (k Keys) Latest(device string) string { return k.Prefix + ":latest:" + device }

// Devices is the set of the devices that have a Latest hash.
func (k Keys) Devices() string { return k.Prefix + ":devices" }

// Lease is the poll lease of a device.
func (k Keys) Lease(device string) string { return k.Prefix + ":lease:" + device }

// Kicks is the pub/sub channel of kicks.
func (k Keys) Kicks() string { return k.Prefix + ":kicks" }

// Epoch returns the sequence epoch of the stream: a number derived from
// its key alone, so that every instance reading it reports the same one
// without asking Redis. It is below 2^53, exact in JavaScript.
func (k Keys) Epoch() int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("pearld redis_stream epoch\x00" + k.Stream()))
	return int64(h.Sum64()&(1<<53-1)) | 1
}

// Stream ids are "ms-n": the Redis server's clock in milliseconds and a
// sequence number within that millisecond. The write script keeps n
// below 1000 (it moves on to the next millisecond instead), so that
// seq = ms*1000 + n is a one-to-one, monotonic mapping, identical on every
// instance, below 2^53 until the year 2255.
const seqPerMilli = 1000

// SeqOf returns the Seq of a stream id; ok is false for an id that is not
// "ms-n" with n below 1000.
func SeqOf(id string) (seq uint64, ok bool) {
	msPart, nPart, found := strings.Cut(id, "-")
	if !found {
		return 0, false
	}
	ms, err := strconv.ParseUint(msPart, 10, 64)
	if err != nil || ms > (1<<63)/seqPerMilli {
		return 0, false
	}
	n, err := strconv.ParseUint(nPart, 10, 64)
	if err != nil || n >= seqPerMilli {
		return 0, false
	}
	return ms*seqPerMilli + n, true
}

// IDOf returns the stream id of a Seq.
func IDOf(seq uint64) string {
	return strconv.FormatUint(seq/seqPerMilli, 10) + "-" + strconv.FormatUint(seq%seqPerMilli, 10)
}

// compareIDs compares two stream ids "ms-n" numerically; malformed ids
// compare as 0-0.
func compareIDs(a, b string) int {
	am, an := splitID(a)
	bm, bn := splitID(b)
	switch {
	case am != bm:
		if am < bm {
			return -1
		}
		return 1
	case an != bn:
		if an < bn {
			return -1
		}
		return 1
	}
	return 0
}

func splitID(id string) (ms, n uint64) {
	i := 0
	for i < len(id) && id[i] != '-' {
		i++
	}
	ms, _ = strconv.ParseUint(id[:i], 10, 64)
	if i < len(id) {
		n, _ = strconv.ParseUint(id[i+1:], 10, 64)
	}
	return ms, n
}

// timeLayout writes event times in fixed width, so that comparing two of
// them as strings, as the write script does, compares the times.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// The fields of a stream entry. Every entry has all of them, in this
// order, so that Redis stores their names once per stream node.
const (
	fieldType      = "type"
	fieldDevice    = "device"
	fieldChannel   = "channel"
	fieldPublisher = "publisher"
	fieldTime      = "time"
	fieldHash      = "hash"
	fieldData      = "data"
)

// entryEvent decodes a stream entry.
func entryEvent(id string, values map[string]any) (engine.Event, error) {
	seq, ok := SeqOf(id)
	if !ok {
		return engine.Event{}, fmt.Errorf("decoding entry %s: id is not ms-n with n below 1000", id)
	}
	str := func(f string) string { s, _ := values[f].(string); return s }
	e := engine.Event{
		Type: str(fieldType), Device: str(fieldDevice), Channel: str(fieldChannel), Publisher: str(fieldPublisher),
		Data: json.RawMessage(str(fieldData)), Seq: seq,
	}
	if e.Type == "" || e.Device == "" {
		return engine.Event{}, fmt.Errorf("decoding entry %s: no type or device", id)
	}
	var err error
	if e.Time, err = time.Parse(time.RFC3339Nano, str(fieldTime)); err != nil {
		return engine.Event{}, fmt.Errorf("decoding entry %s: time: %w", id, err)
	}
	if e.Hash, err = strconv.ParseUint(str(fieldHash), 16, 64); err != nil {
		return engine.Event{}, fmt.Errorf("decoding entry %s: hash: %w", id, err)
	}
	return e, nil
}

// Record is the JSON form of an event in a PREFIX:latest hash. id, time
// and hash come first, in this order: the write script reads them there.
type Record struct {
	ID        string          `json:"id"`
	Time      string          `json:"time"`
	Hash      string          `json:"hash"`
	Type      string          `json:"type"`
	Device    string          `json:"device"`
	Channel   string          `json:"channel"`
	Publisher string          `json:"publisher"`
	Data      json.RawMessage `json:"data"`
}

// recordTail returns the JSON of e's Record without its opening brace and
// id: the write script prepends {"id":"ID" once Redis has given the id.
// It fails when e.Data is not valid JSON.
func recordTail(e *engine.Event) (string, error) {
	b, err := json.Marshal(struct {
		Time      string          `json:"time"`
		Hash      string          `json:"hash"`
		Type      string          `json:"type"`
		Device    string          `json:"device"`
		Channel   string          `json:"channel"`
		Publisher string          `json:"publisher"`
		Data      json.RawMessage `json:"data"`
	}{formatTime(e.Time), hashString(e.Hash), e.Type, e.Device, e.Channel, e.Publisher, dataOrNull(e.Data)})
	if err != nil {
		return "", err
	}
	return "," + string(b[1:]), nil
}

func hashString(h uint64) string { return fmt.Sprintf("%016x", h) }

func dataOrNull(d json.RawMessage) json.RawMessage {
	if len(d) == 0 {
		return json.RawMessage("null")
	}
	return d
}

// Event returns the event of a record.
func (r *Record) Event() (engine.Event, error) {
	seq, ok := SeqOf(r.ID)
	if !ok {
		return engine.Event{}, fmt.Errorf("decoding record: id %q is not ms-n with n below 1000", r.ID)
	}
	t, err := time.Parse(time.RFC3339Nano, r.Time)
	if err != nil {
		return engine.Event{}, fmt.Errorf("decoding record %s: time: %w", r.ID, err)
	}
	h, err := strconv.ParseUint(r.Hash, 16, 64)
	if err != nil {
		return engine.Event{}, fmt.Errorf("decoding record %s: hash: %w", r.ID, err)
	}
	if r.Type == "" || r.Device == "" {
		return engine.Event{}, fmt.Errorf("decoding record %s: no type or device", r.ID)
	}
	return engine.Event{
		Type: r.Type, Device: r.Device, Channel: r.Channel, Publisher: r.Publisher,
		Time: t, Data: r.Data, Hash: h, Seq: seq,
	}, nil
}

// decodeRecord decodes a value of a PREFIX:latest hash.
func decodeRecord(v string) (engine.Event, error) {
	var r Record
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return engine.Event{}, fmt.Errorf("decoding record: %w", err)
	}
	return r.Event()
}

// LatestOf returns the latest events of a device, one per subscription
// key, as the redis_stream sink recorded them. Values that do not decode
// are skipped; their errors are joined into err, which is otherwise the
// error of the request.
func LatestOf(ctx context.Context, rdb redis.Cmdable, keys Keys, device string) ([]engine.Event, error) {
	m, err := rdb.HGetAll(ctx, keys.Latest(device)).Result()
	if err != nil {
		return nil, fmt.Errorf("reading latest state of %s: %w", device, err)
	}
	out := make([]engine.Event, 0, len(m))
	var errs []error
	for _, v := range m {
		e, err := decodeRecord(v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, e)
	}
	return out, errors.Join(errs...)
}

// Options parses a Redis URL ("redis://[user:password@]host:port/db",
// "rediss://..." for TLS, "unix:///path?db=N") into client options. Its
// errors never quote the URL, which may hold a password.
func Options(rawURL string) (*redis.Options, error) {
	if rawURL == "" {
		return nil, errors.New("parsing redis URL: empty")
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" {
		return nil, errors.New("parsing redis URL: want redis://[user:password@]host[:port][/db], rediss://... or unix:///path")
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
	default:
		return nil, fmt.Errorf("parsing redis URL: scheme must be redis, rediss or unix, not %q", u.Scheme)
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parsing redis URL %s: %w", u.Redacted(), err)
	}
	// Contexts bound every call, so a stopping component never waits
	// for a socket timeout.
	opts.ContextTimeoutEnabled = true
	return opts, nil
}

// Redacted returns a Redis URL fit for logs: without its password.
func Redacted(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(bad URL)"
	}
	return u.Redacted()
}

// sharedClient is a Redis client as a pipeline resource.
type sharedClient struct{ *redis.Client }

func (c sharedClient) Close(context.Context) error { return c.Client.Close() }

// Client returns the Redis client of rawURL shared by the components of
// env's pipeline (one connection pool per server), creating it on first
// use. It does not connect; it is closed when the pipeline stops.
func Client(env *engine.Env, rawURL string) (*redis.Client, error) {
	opts, err := Options(rawURL)
	if err != nil {
		return nil, err
	}
	v, err := env.Resource("redis:"+rawURL, func() (any, error) { return sharedClient{redis.NewClient(opts)}, nil })
	if err != nil {
		return nil, err
	}
	c, ok := v.(sharedClient)
	if !ok {
		return nil, fmt.Errorf("getting redis client: resource is a %T", v)
	}
	return c.Client, nil
}
