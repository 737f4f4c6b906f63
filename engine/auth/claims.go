package auth

import (
	"path"
	"time"
)

// Permissions are the booleans of a token's `permissions` claim.
type Permissions struct {
	// RealtimeData grants read access to live data.
	RealtimeData bool `json:"realtime_data"`
	// AudioStreams grants read access (audio dashboards).
	AudioStreams bool `json:"audio_streams"`
	// Admin grants read access, the admin REST calls and control calls.
	Admin bool `json:"admin"`
	// PublisherControl grants the control calls (start and stop publishers).
	PublisherControl bool `json:"publisher_control"`
}

// Claims is what a verified token says about its bearer.
type Claims struct {
	// Subject is the `sub` claim: who the token was issued to.
	Subject string
	// Name and Email are informational; they may be empty.
	Name, Email string
	// Permissions is the `permissions` claim; all false when absent.
	Permissions Permissions
	// Devices is the `devices` claim: device ids or path.Match patterns.
	// Nil means the claim was absent and every device is allowed; an empty,
	// non-nil list allows none.
	Devices []string
	// Issuer and Audience are the `iss` and `aud` claims, when present.
	Issuer   string
	Audience []string
	// IssuedAt and ExpiresAt are the `iat` and `exp` claims.
	IssuedAt, ExpiresAt time.Time
}

// CanRead reports whether the bearer may read live data: any of
// realtime_data, audio_streams and admin grants it.
func (c *Claims) CanRead() bool {
	p := c.Permissions
	return p.RealtimeData || p.AudioStreams || p.Admin
}

// IsAdmin reports whether the bearer may make the admin calls.
func (c *Claims) IsAdmin() bool { return c.Permissions.Admin }

// CanControl reports whether the bearer may control publishers:
// publisher_control or admin grants it.
func (c *Claims) CanControl() bool {
	return c.Permissions.PublisherControl || c.Permissions.Admin
}

// AllowsDevice reports whether the `devices` claim admits the device id.
// Without the claim every device is allowed. Patterns use path.Match
// syntax (`studio-*`); they were checked for syntax when the token was
// verified.
func (c *Claims) AllowsDevice(id string) bool {
	if c.Devices == nil {
		return true
	}
	for _, p := range c.Devices {
		if p == id {
			return true
		}
		if ok, _ := path.Match(p, id); ok {
			return true
		}
	}
	return false
}
