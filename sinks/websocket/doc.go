// Package websocket is the `websocket` sink: the hub that pushes events to
// browsers over WebSocket, speaking the protocol of PROTOCOL.md that
// existing dashboards use.
//
// Clients authenticate with a JWT on the upgrade request, subscribe to
// keys (dataType:device[:channel[:publisherId]]) and get the latest state
// at once, then every data_update of those keys. Each event is encoded and
// framed once by Write; its bytes are queued, by pointer, to every
// subscriber. Each connection has one reader goroutine, which handles
// client messages, and, only while something is queued for it, a writer
// goroutine, which merges everything queued into one network write and
// ends when the queue is empty; one pinger serves all connections. An
// idle connection so costs a reader blocked in a read, on a small stack,
// and its buffers. Write wakes the writers once its whole batch is
// queued, so a batch (from the batch processor, say) reaches a client
// that keeps up in one write, and a client that connected with ?batch=1
// as one `batch` frame. Queues are bounded: a
// client that cannot keep up is closed, it never slows the others or
// Write. The hub keeps the last events of each key so that a client that
// reconnects resumes with `since` and misses nothing.
//
// A subscription must name a data type that something upstream produces:
// the union of the upstream sources' engine.DataTyper declarations and the
// types already written. A source that may emit any data type (the webhook
// source) says so with "*" among its DataTypes; a source that declares
// nothing (no DataTyper, or DataTypes returning nil) counts as such too.
// Either makes the hub accept every well-formed data type.
package websocket
