package auth

import (
	"time"

	"github.com/pearld/pearld/engine"
)

// Algorithm names accepted in Config.Algorithms.
const (
	HS256 = "HS256"
	HS384 = "HS384"
	HS512 = "HS512"
	RS256 = "RS256"
	ES256 = "ES256"
	EdDSA = "EdDSA"
)

// SecretEnv is the environment variable NewVerifier reads the HMAC secret
// from when Config.JWTSecret is empty.
const SecretEnv = "JWT_SECRET"

// DefaultLeeway is the clock skew tolerated on exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// Config is how a component configures token verification. Components
// embed it untagged, so its keys (below, with their defaults) sit directly
// in the component's table, and build a Verifier from it in Init.
type Config struct {
	// JWTSecret is the shared secret of the HMAC algorithms. Default: the
	// JWT_SECRET environment variable, read by NewVerifier. It must be at
	// least as long as the longest configured HMAC hash (RFC 7518 3.2): 32
	// bytes for HS256, 48 for HS384, 64 for HS512.
	JWTSecret string `toml:"jwt_secret"`
	// Algorithms lists the signing algorithms accepted; any other, "none"
	// included, is refused. Default ["HS256"]. Allowed: HS256, HS384,
	// HS512, RS256, ES256, EdDSA.
	Algorithms []string `toml:"algorithms"`
	// PublicKeys are paths of PEM files (PUBLIC KEY, RSA PUBLIC KEY or
	// CERTIFICATE blocks) holding the keys of RS256, ES256 and EdDSA. Each
	// key must fit a configured algorithm. Default none.
	PublicKeys []string `toml:"public_keys"`
	// Issuer, when set, is required in the `iss` claim. Default unchecked.
	Issuer string `toml:"issuer"`
	// Audience, when set, must be one of the `aud` claim's values. Default
	// unchecked.
	Audience string `toml:"audience"`
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default 30s.
	Leeway engine.Duration `toml:"leeway"`
}

// DefaultConfig returns a Config with its defaults set: HS256, the secret
// from JWT_SECRET, a leeway of 30s.
func DefaultConfig() Config {
	return Config{Algorithms: []string{HS256}, Leeway: engine.Duration(DefaultLeeway)}
}
