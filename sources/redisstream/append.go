package redisstream

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pearld/pearld/engine"
)

// appendScript appends a batch of events to the stream and to each key's
// history, and records each as its key's latest state, atomically: a
// reader never sees an event in one place and not in the other.
//
// It chooses the ids itself: the server's clock in milliseconds, or the
// last id's when that is ahead, and a sequence number that stays below
// 1000 (the next millisecond is taken instead), so that every id maps to
// a distinct Seq (see SeqOf).
//
// An event older than its key's latest one (by the time it was observed)
// is not written: it comes from an instance that polled a device before
// its lease moved, and would otherwise overwrite newer state. An event
// equal in time and hash to its key's latest one is not written either:
// it is a retry of a write whose answer was lost.
//
// KEYS: stream, devices set, then for each event its history stream and
// latest hash. ARGV: max_len, history, history TTL in ms (0: none), then
// for each event argsPerEvent values (see Append).
// Returns {written, skipped}.
var appendScript = redis.NewScript(`
local stream, devices = KEYS[1], KEYS[2]
local maxlen, histlen, histttl = ARGV[1], ARGV[2], ARGV[3]
local last_ms, last_n = 0, -1
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', stream)
if ok then
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local ms, n = string.match(info[i + 1], '^(%d+)-(%d+)$')
      last_ms, last_n = tonumber(ms), tonumber(n)
    end
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local written, skipped = 0, 0
for i = 0, (#KEYS - 2) / 2 - 1 do
  local a = 4 + 9 * i
  local key, device, time, hash = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local history, latest = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local old = redis.call('HGET', latest, key)
  local stale = false
  if old then
    local ot, oh = string.match(old, '^{"id":"[^"]*","time":"([^"]*)","hash":"([^"]*)"')
    stale = ot ~= nil and (ot > time or (ot == time and oh == hash))
  end
  if stale then
    skipped = skipped + 1
  else
    if now > last_ms then
      last_ms, last_n = now, 0
    elseif last_n < 999 then
      last_n = last_n + 1
    else
      last_ms, last_n = last_ms + 1, 0
    end
    local id = string.format('%.0f-%d', last_ms, last_n)
    local key_type, channel, publisher, data, tail = ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, id,
      'type', key_type, 'device', device, 'channel', channel, 'publisher', publisher,
      'time', time, 'hash', hash, 'data', data)
    local hist = {'XADD', history, 'MAXLEN', '~', histlen, id,
      'type', key_type, 'device', device, 'channel', channel, 'publisher', publisher,
      'time', time, 'hash', hash, 'data', data}
    if not pcall(redis.call, unpack(hist)) then
      -- Its ids are ahead of the stream's: the stream was deleted and
      -- started again behind them. Start the history again too.
      redis.call('DEL', history)
      redis.call(unpack(hist))
    end
    if histttl ~= '0' then
      redis.call('PEXPIRE', history, histttl)
    end
    redis.call('HSET', latest, key, '{"id":"' .. id .. '"' .. tail)
    redis.call('SADD', devices, device)
    written = written + 1
  end
end
return {written, skipped}
`)

// argsPerEvent is how many ARGV values appendScript takes per event: key,
// device, time, hash, type, channel, publisher, data, record tail.
const argsPerEvent = 9

// AppendOptions bound what Append keeps.
type AppendOptions struct {
	// MaxLen is about how many events the stream keeps.
	MaxLen int64
	// History is about how many events each key's history keeps.
	History int64
	// HistoryTTL drops the history of a key that had no event for this
	// long; 0 keeps it.
	HistoryTTL time.Duration
}

// Append writes events, in order, in one atomic call: to the stream, to
// their keys' histories, and as their keys' latest state. It returns how
// many it wrote and how many it skipped as stale (see appendScript).
// Every event must have a type and a device, and Data that is valid JSON
// or empty.
func Append(ctx context.Context, rdb redis.Scripter, keys Keys, o AppendOptions, events []engine.Event) (written, skipped int, err error) {
	if len(events) == 0 {
		return 0, 0, nil
	}
	ks := make([]string, 0, 2+2*len(events))
	ks = append(ks, keys.Stream(), keys.Devices())
	args := make([]any, 0, 3+argsPerEvent*len(events))
	ttl := int64(0)
	if o.HistoryTTL > 0 {
		ttl = max(o.HistoryTTL.Milliseconds(), 1)
	}
	args = append(args, o.MaxLen, o.History, ttl)
	for i := range events {
		e := &events[i]
		if e.Type == "" || e.Device == "" {
			return 0, 0, fmt.Errorf("appending event seq %d: missing type or device", e.Seq)
		}
		tail, err := recordTail(e)
		if err != nil {
			return 0, 0, fmt.Errorf("appending event %s: data is not valid JSON", e.Key())
		}
		key := e.Key()
		ks = append(ks, keys.History(key), keys.Latest(e.Device))
		args = append(args, key, e.Device, formatTime(e.Time), hashString(e.Hash),
			e.Type, e.Channel, e.Publisher, string(dataOrNull(e.Data)), tail)
	}
	res, err := appendScript.Run(ctx, rdb, ks, args...).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("appending %d events to %s: %w", len(events), keys.Stream(), err)
	}
	if len(res) != 2 {
		return 0, 0, fmt.Errorf("appending %d events to %s: unexpected answer %v", len(events), keys.Stream(), res)
	}
	return int(res[0]), int(res[1]), nil
}
