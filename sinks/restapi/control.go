package restapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pearld/pearld/engine/auth"
	"github.com/pearld/pearld/sources/pearl"
)

// controlAnswer is the body of a control call the device accepted. Result
// is the device's answer: a Pearl acknowledges control with
// {"status":"ok"} and applies it asynchronously; the pollers, kicked by the
// call, report the outcome as publisher_status events within a second or
// so.
type controlAnswer struct {
	Status    string          `json:"status"`
	Device    string          `json:"device"`
	Channel   string          `json:"channel"`
	Publisher string          `json:"publisher,omitempty"`
	Action    string          `json:"action"`
	Result    json.RawMessage `json:"result"`
	Message   string          `json:"message"`
}

// statusClientClosed is the status recorded for a control call whose
// client went away before the device answered (nginx's 499).
const statusClientClosed = 499

// deviceAccepted is what a Pearl answers to a control call it accepted.
var deviceAccepted = json.RawMessage(`{"status":"ok"}`)

// control returns the handler that starts or stops (action) every
// publisher of a channel or, with one, the publisher of the path.
func (a *API) control(action string, one bool) handler {
	return func(w http.ResponseWriter, r *http.Request, c *auth.Claims) {
		device, channel, ok := a.target(w, r, c, one)
		if !ok {
			return
		}
		publisher := ""
		if one {
			publisher = r.PathValue("publisher")
		}
		client := a.clients[device]
		if a.closing.Err() != nil {
			// Checked here too: the cancel below may come after the
			// request was sent, and a stopping pipeline sends nothing.
			writeError(w, http.StatusServiceUnavailable, "shutting_down", "pearld is shutting down; try again")
			return
		}

		start := time.Now()
		ctx, cancel := context.WithTimeout(r.Context(), a.ControlTimeout.D())
		defer cancel()
		stop := context.AfterFunc(a.closing, cancel)
		defer stop()
		var err error
		switch {
		case one && action == "start":
			err = client.StartPublisher(ctx, channel, publisher)
		case one:
			err = client.StopPublisher(ctx, channel, publisher)
		case action == "start":
			err = client.StartPublishers(ctx, channel)
		default:
			err = client.StopPublishers(ctx, channel)
		}

		log := a.log.With("sub", c.Subject, "device", device, "channel", channel, "publisher", publisher,
			"action", action, "took", time.Since(start).Round(time.Millisecond))
		if err != nil {
			status, code, msg := a.controlError(r.Context(), device, err)
			a.metrics.control.WithLabelValues(action, code).Inc()
			if code == "canceled" {
				log.Debug("publisher control canceled by the client")
				w.WriteHeader(status) // for the metrics: nobody reads it
				return
			}
			log.Warn("publisher control failed", "result", code, "err", err)
			writeError(w, status, code, msg)
			return
		}
		a.metrics.control.WithLabelValues(action, "ok").Inc()
		log.Info("publisher control", "result", "ok")
		what := "all publishers of channel " + channel
		if one {
			what = "publisher " + publisher + " of channel " + channel
		}
		writeJSON(w, http.StatusOK, controlAnswer{
			Status: "ok", Device: device, Channel: channel, Publisher: publisher, Action: action,
			Result: deviceAccepted,
			Message: fmt.Sprintf("device %s accepted %s for %s; publisher_status events report the outcome",
				device, action, what),
		})
	}
}

// controlError maps a failed control call to the answer's status, code
// and message. Messages name the device and say what went wrong; they
// never hold credentials (the client sends them in a header only, and its
// errors do not quote requests).
func (a *API) controlError(reqCtx context.Context, device string, err error) (int, string, string) {
	var pe *pearl.Error
	errors.As(err, &pe)
	detail := err.Error()
	if pe != nil {
		detail = pe.Message
	}
	switch {
	case reqCtx.Err() != nil:
		return statusClientClosed, "canceled", "the client went away"
	case a.closing.Err() != nil:
		return http.StatusServiceUnavailable, "shutting_down", "pearld is shutting down; try again"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "device_timeout",
			fmt.Sprintf("device %s did not answer within control_timeout (%s)", device, a.ControlTimeout)
	case errors.Is(err, pearl.ErrNotFound):
		return http.StatusNotFound, "not_found", fmt.Sprintf("device %s: %s", device, detail)
	case errors.Is(err, pearl.ErrUnauthorized):
		return http.StatusBadGateway, "device_auth_failed",
			fmt.Sprintf("device %s refused pearld's credentials: %s; check the username and password of [devices.%s] in the pipeline", device, detail, device)
	case pearl.ReasonOf(err) == pearl.ReasonTimeout:
		return http.StatusGatewayTimeout, "device_timeout", fmt.Sprintf("device %s: %s", device, detail)
	case errors.Is(err, pearl.ErrUnavailable):
		return http.StatusBadGateway, "device_unavailable", fmt.Sprintf("device %s: %s", device, detail)
	case errors.Is(err, pearl.ErrAPIMissing):
		return http.StatusBadGateway, "device_api_missing", fmt.Sprintf("device %s: %s", device, detail)
	case errors.Is(err, pearl.ErrBadResponse):
		return http.StatusBadGateway, "device_bad_response", fmt.Sprintf("device %s: %s", device, detail)
	case errors.Is(err, pearl.ErrRejected):
		// The device answered and refused the command; repeating it will
		// not help until the device's state changes.
		return http.StatusConflict, "device_rejected", fmt.Sprintf("device %s: %s", device, detail)
	default:
		return http.StatusBadGateway, "device_error", fmt.Sprintf("device %s: %s", device, detail)
	}
}
