package pearl

import (
	"encoding/json"
	"time"

	"github.com/pearld/pearld/engine"
)

// A new holder of a device's lease (see lease.go) starts its trackers from
// the latest events of the device that the redis_stream sink recorded, so
// that it reports what changed since clients last heard, and stays quiet
// when nothing did.

// seed starts the tracker from the latest publisher_status events clients
// have seen of its device (see pollDevice). Channels whose latest state
// lists no publishers are left out: a channel that was removed looks the
// same, and reporting it again as removed would be a spurious change.
func (t *publisherTracker) seed(events []engine.Event) {
	for _, e := range events {
		if e.Type != TypePublisherStatus || e.Device != t.device || e.Channel == "" || e.Publisher != "" {
			continue
		}
		var d PublisherStatusData
		if err := json.Unmarshal(e.Data, &d); err != nil || len(d.Publishers) == 0 {
			continue
		}
		t.known[e.Channel] = d.Publishers
	}
}

// seed starts the tracker from the latest device_health event clients have
// seen of its device (see pollDevice): an online or degraded device stays
// quiet until its status changes, and its uptime is compared with the
// last one reported, so that a reboot during the handover is seen. The
// last answer and the count of failures carry over; a failing device
// reports its failure once more, since the seed does not tell its class.
func (t *healthTracker) seed(events []engine.Event) {
	var latest *engine.Event
	for i := range events {
		e := &events[i]
		if e.Type == TypeDeviceHealth && e.Device == t.device && e.Channel == "" && (latest == nil || e.Seq > latest.Seq) {
			latest = e
		}
	}
	if latest == nil {
		return
	}
	var d DeviceHealthData
	if err := json.Unmarshal(latest.Data, &d); err != nil {
		return
	}
	if d.LastSeen != nil {
		if at, err := time.Parse(time.RFC3339Nano, *d.LastSeen); err == nil {
			t.lastSeen = at
		}
	}
	t.errCount = d.ErrorCount
	if d.Firmware != nil {
		t.firmware = d.Firmware
	}
	if (d.Status != HealthOnline && d.Status != HealthDegraded) || d.System == nil {
		return
	}
	t.emitted, t.emittedStatus, t.emittedReason = true, d.Status, ""
	t.emittedFigures, t.emittedCPU, t.emittedTmp = true, d.System.CPULoad, d.System.CPUTemp
	t.uptime, t.uptimeAt = d.System.Uptime, latest.Time
}
