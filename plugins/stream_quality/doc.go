// Command stream_quality is the pearld plugin that reports the quality of
// the streams of Epiphan Pearl encoders. It emits a `stream_quality` event
// per device and channel (key stream_quality:DEVICE:CHANNEL) with the
// channel's configured encoding and each publisher's live figures:
//
//	{"device_id":"studio-a","device_ip":"192.168.1.100","channel":"1",
//	 "encoder":{"codec":"H.264","resolution":"1920x1080","framerate":30,
//	            "video_bitrate_kbps":3000,"audio_codec":"AAC",
//	            "audio_bitrate_kbps":128,"audio_channels":2},
//	 "publishers":[{"id":"1","name":"Stream 2","type":"srt","state":"started",
//	                "started":true,"send_rate_mbps":3.54,"rtt_ms":0.93,
//	                "loss_ratio":0,"drop_ratio":0,"retransmit_ratio":0.002}],
//	 "streaming":true,"fetched_at":"2026-11-25T20:31:12.345Z"}
//
// It polls GET /api/v2.0/channels?publishers=true&publishers-status=true&encoders=true,
// one request per device and poll. The live figures come from a
// publisher's statistics, which Pearls report for SRT only: for other
// publishers (RTMP, ...) they are absent, not zero. The ratios are
// computed from the growth of the SRT counters between two polls
// (pkt_loss, pkt_drop, pkt_retrans over pkt_sent), falling back to the
// device's own current ratios; the send rate is current.send_rate
// (Mbit/s); the round-trip time is total.ms_rtt, or current.rtt read as
// microseconds as pearltest serves it.
//
// An event is emitted on the first poll of a channel, when a publisher
// starts or stops (its state or started flag changes), when publishers or
// the encoding change, and when a figure moves by more than `threshold`
// relative to the value of the last event (figures near zero are compared
// with a floor, so noise around zero is no move: 0.005 for ratios, 1 ms
// for the round trip, 0.1 Mbit/s for the send rate) - never on every poll.
// A channel that disappears is emitted once with no publishers.
//
// Pipeline:
//
//	[sources.quality]
//	type      = "plugin"
//	plugin    = "stream_quality"
//	devices   = ["*"]
//	interval  = "5s"
//	threshold = 0.1   # relative move of a figure that makes an event; default 0.1
package main
