package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Verifier checks tokens against one Config. It is safe for concurrent
// use.
type Verifier struct {
	algorithms []string
	secret     []byte
	rsaKeys    jwt.VerificationKeySet
	ecKeys     jwt.VerificationKeySet
	edKeys     jwt.VerificationKeySet
	parser     *jwt.Parser
}

// hmacMinSecret is the minimum secret length per HMAC algorithm: the size
// of its hash (RFC 7518 section 3.2).
var hmacMinSecret = map[string]int{HS256: 32, HS384: 48, HS512: 64}

// NewVerifier builds a Verifier. It reads the JWT_SECRET environment
// variable when cfg.JWTSecret is empty and an HMAC algorithm is
// configured, and reads the PEM files of cfg.PublicKeys. It fails when an
// algorithm is unknown, when an HMAC algorithm has no secret or one
// shorter than its hash, when an asymmetric algorithm has no matching
// public key, or when a key fits no configured algorithm.
func NewVerifier(cfg Config) (*Verifier, error) {
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = []string{HS256}
	}
	v := &Verifier{algorithms: slices.Clone(algs)}
	minSecret, hmacAlg := 0, ""
	for _, a := range algs {
		switch a {
		case HS256, HS384, HS512:
			if n := hmacMinSecret[a]; n > minSecret {
				minSecret, hmacAlg = n, a
			}
		case RS256, ES256, EdDSA:
		default:
			return nil, fmt.Errorf("configuring jwt: unknown algorithm %q (allowed: HS256, HS384, HS512, RS256, ES256, EdDSA)", a)
		}
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("configuring jwt: leeway %s is negative", cfg.Leeway)
	}

	if hmacAlg != "" {
		secret := cfg.JWTSecret
		if secret == "" {
			secret = os.Getenv(SecretEnv)
		}
		switch {
		case secret == "":
			return nil, fmt.Errorf("configuring jwt: %s needs a secret: set jwt_secret or the %s environment variable", hmacAlg, SecretEnv)
		case len(secret) < minSecret:
			return nil, fmt.Errorf("configuring jwt: the secret is %d bytes, %s needs at least %d (RFC 7518 3.2); generate one with `openssl rand -base64 48`", len(secret), hmacAlg, minSecret)
		}
		v.secret = []byte(secret)
	}

	for _, file := range cfg.PublicKeys {
		if err := v.loadKeys(file); err != nil {
			return nil, fmt.Errorf("configuring jwt: %w", err)
		}
	}
	for _, a := range algs {
		var n int
		switch a {
		case RS256:
			n = len(v.rsaKeys.Keys)
		case ES256:
			n = len(v.ecKeys.Keys)
		case EdDSA:
			n = len(v.edKeys.Keys)
		default:
			continue
		}
		if n == 0 {
			return nil, fmt.Errorf("configuring jwt: %s needs a public key: add a PEM file to public_keys", a)
		}
	}

	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.algorithms),
		jwt.WithLeeway(cfg.Leeway.D()),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// loadKeys adds the public keys of one PEM file.
func (v *Verifier) loadKeys(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading public key: %w", err)
	}
	found := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var key any
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			if strings.Contains(block.Type, "PRIVATE KEY") {
				return fmt.Errorf("reading public key %s: it holds a private key; configure the public key only", file)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("reading public key %s: %w", file, err)
		}
		if err := v.addKey(file, key); err != nil {
			return err
		}
		found++
	}
	if found == 0 {
		return fmt.Errorf("reading public key %s: no PEM public key or certificate found", file)
	}
	return nil
}

func (v *Verifier) addKey(file string, key any) error {
	want := ""
	switch k := key.(type) {
	case *rsa.PublicKey:
		want = RS256
		if slices.Contains(v.algorithms, want) {
			if k.N.BitLen() < 2048 {
				return fmt.Errorf("reading public key %s: RSA key of %d bits, want at least 2048", file, k.N.BitLen())
			}
			v.rsaKeys.Keys = append(v.rsaKeys.Keys, k)
			return nil
		}
	case *ecdsa.PublicKey:
		want = ES256
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("reading public key %s: ES256 needs a P-256 key, not %s", file, k.Curve.Params().Name)
		}
		if slices.Contains(v.algorithms, want) {
			v.ecKeys.Keys = append(v.ecKeys.Keys, k)
			return nil
		}
	case ed25519.PublicKey:
		want = EdDSA
		if slices.Contains(v.algorithms, want) {
			v.edKeys.Keys = append(v.edKeys.Keys, k)
			return nil
		}
	default:
		return fmt.Errorf("reading public key %s: unsupported key type %T", file, key)
	}
	return fmt.Errorf("reading public key %s: a %s key, but algorithms does not list %s", file, want, want)
}

// keyFor returns the verification keys of the token's algorithm. The
// parser has already refused algorithms that are not configured; the type
// switch on the method makes sure an HMAC token is only ever checked
// against the secret and an asymmetric one only against public keys of its
// kind, which defeats algorithm confusion.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if v.secret != nil {
			return v.secret, nil
		}
	case *jwt.SigningMethodRSA:
		if len(v.rsaKeys.Keys) > 0 {
			return v.rsaKeys, nil
		}
	case *jwt.SigningMethodECDSA:
		if len(v.ecKeys.Keys) > 0 {
			return v.ecKeys, nil
		}
	case *jwt.SigningMethodEd25519:
		if len(v.edKeys.Keys) > 0 {
			return v.edKeys, nil
		}
	}
	return nil, fmt.Errorf("no key for algorithm %s", t.Method.Alg())
}

// tokenClaims is the JSON shape of a token's claims.
type tokenClaims struct {
	jwt.RegisteredClaims
	Name        string       `json:"name,omitempty"`
	Email       string       `json:"email,omitempty"`
	Permissions *Permissions `json:"permissions,omitempty"`
	Devices     *[]string    `json:"devices,omitempty"`
}

// Validate checks the claims the jwt parser does not: sub and iat are
// required, and device patterns must be well-formed.
func (c *tokenClaims) Validate() error {
	if c.Subject == "" {
		return errors.New("missing sub claim")
	}
	if c.IssuedAt == nil {
		return errors.New("missing iat claim")
	}
	if c.Devices != nil {
		for _, p := range *c.Devices {
			if _, err := path.Match(p, ""); err != nil {
				return fmt.Errorf("devices claim: bad pattern %q", p)
			}
		}
	}
	return nil
}

// Verify checks a token and returns its claims. Every error wraps
// ErrUnauthenticated; the rest of its text says why, for logs. Verify
// does not check permissions: a valid token that grants nothing returns
// claims whose CanRead is false.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: no token", ErrUnauthenticated)
	}
	var tc tokenClaims
	if _, err := v.parser.ParseWithClaims(token, &tc, v.keyFor); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	c := &Claims{
		Subject:  tc.Subject,
		Name:     tc.Name,
		Email:    tc.Email,
		Issuer:   tc.Issuer,
		Audience: tc.Audience,
		IssuedAt: tc.IssuedAt.Time,
	}
	if tc.ExpiresAt != nil {
		c.ExpiresAt = tc.ExpiresAt.Time
	}
	if tc.Permissions != nil {
		c.Permissions = *tc.Permissions
	}
	if tc.Devices != nil {
		c.Devices = *tc.Devices
		if c.Devices == nil {
			c.Devices = []string{}
		}
	}
	return c, nil
}

// Authenticate verifies the token a request carries (see
// TokenFromRequest).
func (v *Verifier) Authenticate(r *http.Request) (*Claims, error) {
	return v.Verify(TokenFromRequest(r))
}
