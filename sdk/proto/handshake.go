package proto

// The go-plugin handshake. The magic cookie only tells a plugin binary that
// it was started by pearld (and a person running it by hand gets a hint);
// it is not a security measure. ProtocolVersion changes when a change of
// the contract cannot be ignored by the other side; host and plugin then
// negotiate the highest version both speak.
const (
	ProtocolVersion  = 1
	MagicCookieKey   = "PEARLD_PLUGIN"
	MagicCookieValue = "b7d1c3f0-pearld-plugin-v1"
)

// The names of the plugin kinds in go-plugin's plugin map.
const (
	// PluginSource is a data-type source: the Source service.
	PluginSource = "source"
)

// MaxMessageSize bounds one gRPC message in either direction, on both
// sides: a poll of a large device may return many events.
const MaxMessageSize = 16 << 20

// IsReserved reports whether name is a key of the host's own
// configuration of a plugin source (or of every component), which a
// plugin may therefore not declare as one of its options.
func IsReserved(name string) bool {
	switch name {
	case "type", "inputs", "buffer", "when_full", // every component
		"plugin", "devices", "interval", "max_backoff", "sha256": // the plugin source
		return true
	}
	return false
}
