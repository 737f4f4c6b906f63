package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenFromRequest returns the token a request carries, looking in order
// at the `Authorization: Bearer <t>` header, the `X-Auth-Token` header and
// the `token` query parameter (browsers cannot set headers on a WebSocket
// upgrade). It returns "" when there is none.
func TokenFromRequest(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, t, ok := strings.Cut(strings.TrimSpace(h), " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			if t = strings.TrimSpace(t); t != "" {
				return t
			}
		}
	}
	if t := strings.TrimSpace(r.Header.Get("X-Auth-Token")); t != "" {
		return t
	}
	if r.URL != nil && strings.Contains(r.URL.RawQuery, "token=") {
		return strings.TrimSpace(r.URL.Query().Get("token"))
	}
	return ""
}

// MintOptions describes a token to mint.
type MintOptions struct {
	// Subject is the `sub` claim; required.
	Subject string
	// Name and Email are optional informational claims.
	Name, Email string
	// Permissions is the `permissions` claim.
	Permissions Permissions
	// Devices is the `devices` claim; nil leaves it out (all devices).
	Devices []string
	// TTL is how long the token is valid; required.
	TTL time.Duration
	// Issuer and Audience are the optional `iss` and `aud` claims.
	Issuer, Audience string
	// Now is the issue time; zero means time.Now().
	Now time.Time
}

// Mint returns an HS256 token signed with secret, for `pearld token` and
// tests. The secret must be at least 32 bytes, like the verifier's.
func Mint(secret []byte, o MintOptions) (string, error) {
	switch {
	case len(secret) < hmacMinSecret[HS256]:
		return "", fmt.Errorf("minting token: the secret is %d bytes, HS256 needs at least %d", len(secret), hmacMinSecret[HS256])
	case o.Subject == "":
		return "", errors.New("minting token: missing subject")
	case o.TTL <= 0:
		return "", errors.New("minting token: TTL must be positive")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	perms := o.Permissions
	c := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   o.Subject,
			Issuer:    o.Issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(o.TTL)),
		},
		Name:        o.Name,
		Email:       o.Email,
		Permissions: &perms,
	}
	if o.Audience != "" {
		c.Audience = jwt.ClaimStrings{o.Audience}
	}
	if o.Devices != nil {
		c.Devices = &o.Devices
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("minting token: %w", err)
	}
	return s, nil
}
