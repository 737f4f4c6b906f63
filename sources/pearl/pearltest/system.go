package pearltest

import (
	"encoding/json"
	"math"
	"time"
)

// isoLayout is RFC 3339 with a numeric offset, as Pearl firmware writes it
// ("2025-02-14T08:41:09-05:00").
const isoLayout = "2006-01-02T15:04:05-07:00"

type dateKind int

const (
	dateISO dateKind = iota
	dateEpoch
	dateVerbatim
)

// system is the ticking health state of a Device.
type system struct {
	kind    dateKind
	date    time.Time // device clock at dateAt
	dateAt  time.Time
	dateRaw any // for dateVerbatim

	uptime   int64 // seconds at uptimeAt
	uptimeAt time.Time

	cpuLoad          int
	cpuLoadHigh      bool
	cpuTemp          int
	cpuTempThreshold int
}

func (s *system) set(st SystemStatus, now time.Time) {
	s.kind, s.date, s.dateRaw = dateISO, now, nil
	s.dateAt = now
	switch v := st.Date.(type) {
	case nil:
	case time.Time:
		s.date = v
	case string:
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			s.date = t
		} else {
			s.kind, s.dateRaw = dateVerbatim, v
		}
	default:
		if sec, ok := epochSeconds(v); ok {
			s.kind, s.date = dateEpoch, time.Unix(sec, 0)
		} else {
			s.kind, s.dateRaw = dateVerbatim, v
		}
	}
	s.uptime, s.uptimeAt = st.Uptime, now
	s.cpuLoad = st.CPULoad
	s.cpuLoadHigh = st.CPULoadHigh
	s.cpuTemp = st.CPUTemp
	s.cpuTempThreshold = st.CPUTempThreshold
}

// epochSeconds converts the numeric types a caller may use for an epoch.
func epochSeconds(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case uint:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint64:
		return int64(n), n <= math.MaxInt64
	case float64:
		return int64(n), true
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}

func (s *system) reboot(now time.Time) {
	s.uptime, s.uptimeAt = 0, now
}

func (s *system) at(now time.Time) SystemStatus {
	out := SystemStatus{
		Uptime:           s.uptime + int64(max(now.Sub(s.uptimeAt), 0)/time.Second),
		CPULoad:          s.cpuLoad,
		CPULoadHigh:      s.cpuLoadHigh,
		CPUTemp:          s.cpuTemp,
		CPUTempThreshold: s.cpuTempThreshold,
	}
	date := s.date.Add(now.Sub(s.dateAt))
	switch s.kind {
	case dateISO:
		out.Date = date.Format(isoLayout)
	case dateEpoch:
		out.Date = date.Unix()
	case dateVerbatim:
		out.Date = s.dateRaw
	}
	return out
}

// srtStats are the growing SRT counters of a started publisher.
type srtStats struct {
	renders     int64
	last        time.Time
	pktSent     int64
	pktLoss     int64
	pktRetrans  int64
	pktDrop     int64
	byteSent    int64
	byteRetrans int64
	byteDrop    int64
}

const srtPayload = 1316 // bytes of TS per SRT packet

// render advances the counters by the traffic since the last render (at
// least one packet, so they grow on every request) and returns the
// statistics object in the shape of the spec's example, plus the
// mbps_send_rate and ms_rtt names srt-live-transmit uses.
func (s *srtStats) render(now, since time.Time, bitrateKbps int) map[string]any {
	last := s.last
	if last.IsZero() {
		last = since
	}
	elapsed := max(now.Sub(last), 0)
	s.last = now
	s.renders++
	pps := float64(bitrateKbps) * 1000 / 8 / srtPayload
	pkts := 1 + int64(elapsed.Seconds()*pps)
	s.pktSent += pkts
	s.byteSent += pkts * srtPayload
	if s.renders%5 == 0 {
		r := 1 + pkts/500
		s.pktRetrans += r
		s.byteRetrans += r * srtPayload
	}
	if s.renders%11 == 0 {
		s.pktLoss++
	}
	if s.renders%23 == 0 {
		s.pktDrop++
		s.byteDrop += srtPayload
	}
	rtt := 900 + (s.renders*37)%400 // microseconds, as in the spec example
	sendRate := math.Round(float64(bitrateKbps)*1.18) / 1000
	ratio := func(n int64) float64 {
		return math.Round(float64(n)/float64(s.pktSent)*1e4) / 1e4
	}
	return map[string]any{
		"total": map[string]any{
			"duration":       int64(max(now.Sub(since), 0) / time.Second),
			"pkt_sent":       s.pktSent,
			"pkt_loss":       s.pktLoss,
			"pkt_retrans":    s.pktRetrans,
			"pkt_drop":       s.pktDrop,
			"latency":        125,
			"byte_sent":      s.byteSent,
			"byte_retrans":   s.byteRetrans,
			"byte_drop":      s.byteDrop,
			"mbps_send_rate": sendRate,
			"ms_rtt":         float64(rtt) / 1000,
		},
		"current": map[string]any{
			"duration":            20,
			"send_rate":           sendRate,
			"loss_ratio":          ratio(s.pktLoss),
			"retrans_ratio":       ratio(s.pktRetrans),
			"drop_ratio":          ratio(s.pktDrop),
			"latency":             125,
			"rtt":                 rtt,
			"estimated_bandwidth": 300 + float64(s.renders%40),
			"send_buffer":         1000,
			"stream_id":           "",
			"ip":                  "192.168.86.102",
		},
	}
}
