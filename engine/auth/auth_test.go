package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pearld/pearld/engine"
)

const testSecret = "0123456789abcdef0123456789abcdef-test"

func readPerms() map[string]any { return map[string]any{"realtime_data": true} }

// claims returns a valid claim set; mutate it per case.
func claims(mut func(c jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"sub":         "dash-1",
		"iat":         now.Unix(),
		"exp":         now.Add(time.Hour).Unix(),
		"permissions": readPerms(),
	}
	if mut != nil {
		mut(c)
	}
	return c
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return s
}

func hs256(t *testing.T, c jwt.Claims) string {
	return sign(t, jwt.SigningMethodHS256, []byte(testSecret), c)
}

func newVerifier(t *testing.T, cfg Config) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// readAccess is what the hub does: verify, then require read access.
func readAccess(v *Verifier, token string) (*Claims, error) {
	c, err := v.Verify(token)
	if err != nil {
		return nil, err
	}
	if !c.CanRead() {
		return c, ErrForbidden
	}
	return c, nil
}

func TestVerifyTable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JWTSecret = testSecret
	v := newVerifier(t, cfg)
	now := time.Now()

	tests := []struct {
		name  string
		token func(t *testing.T) string
		want  string // client-facing reason, "" when accepted
	}{
		{"no token", func(*testing.T) string { return "" }, ReasonUnauthenticated},
		{"garbage", func(*testing.T) string { return "not.a.token" }, ReasonUnauthenticated},
		{"wrong secret", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), claims(nil))
		}, ReasonUnauthenticated},
		{"alg none", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil))
		}, ReasonUnauthenticated},
		{"algorithm not configured", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS512, []byte(testSecret), claims(nil))
		}, ReasonUnauthenticated},
		{"expired", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }))
		}, ReasonUnauthenticated},
		{"expired within leeway", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() }))
		}, ""},
		{"not yet valid", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }))
		}, ReasonUnauthenticated},
		{"issued in the future", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }))
		}, ReasonUnauthenticated},
		{"no exp", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { delete(c, "exp") }))
		}, ReasonUnauthenticated},
		{"no iat", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { delete(c, "iat") }))
		}, ReasonUnauthenticated},
		{"no sub", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { delete(c, "sub") }))
		}, ReasonUnauthenticated},
		{"permissions not booleans", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { c["permissions"] = map[string]any{"realtime_data": "yes"} }))
		}, ReasonUnauthenticated},
		{"permissions a list", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { c["permissions"] = []string{"realtime_data"} }))
		}, ReasonUnauthenticated},
		{"bad devices pattern", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { c["devices"] = []string{"studio-["} }))
		}, ReasonUnauthenticated},
		{"no permissions", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { delete(c, "permissions") }))
		}, ReasonForbidden},
		{"permission false", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { c["permissions"] = map[string]any{"realtime_data": false} }))
		}, ReasonForbidden},
		{"unrelated permission", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { c["permissions"] = map[string]any{"billing": true} }))
		}, ReasonForbidden},
		{"publisher_control only", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { c["permissions"] = map[string]any{"publisher_control": true} }))
		}, ReasonForbidden},
		{"realtime_data", func(t *testing.T) string { return hs256(t, claims(nil)) }, ""},
		{"audio_streams", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { c["permissions"] = map[string]any{"audio_streams": true} }))
		}, ""},
		{"admin", func(t *testing.T) string {
			return hs256(t, claims(func(c jwt.MapClaims) { c["permissions"] = map[string]any{"admin": true} }))
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readAccess(v, tt.token(t))
			if got := Reason(err); got != tt.want {
				t.Fatalf("reason %q, want %q (err: %v)", got, tt.want, err)
			}
			if err != nil && Reason(err) == ReasonUnauthenticated && !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("error %v does not wrap ErrUnauthenticated", err)
			}
		})
	}
}

func TestClaimsPermissions(t *testing.T) {
	tests := []struct {
		name                 string
		perms                Permissions
		read, admin, control bool
	}{
		{"none", Permissions{}, false, false, false},
		{"realtime", Permissions{RealtimeData: true}, true, false, false},
		{"audio", Permissions{AudioStreams: true}, true, false, false},
		{"admin", Permissions{Admin: true}, true, true, true},
		{"control", Permissions{PublisherControl: true}, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Claims{Permissions: tt.perms}
			if c.CanRead() != tt.read || c.IsAdmin() != tt.admin || c.CanControl() != tt.control {
				t.Fatalf("read/admin/control = %v/%v/%v, want %v/%v/%v",
					c.CanRead(), c.IsAdmin(), c.CanControl(), tt.read, tt.admin, tt.control)
			}
		})
	}
}

func TestDevicesClaim(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JWTSecret = testSecret
	v := newVerifier(t, cfg)
	tests := []struct {
		name    string
		devices any // nil: claim absent
		allowed []string
		refused []string
	}{
		{"absent", nil, []string{"studio-a", "192.168.1.100"}, nil},
		{"ids", []string{"192.168.1.100"}, []string{"192.168.1.100"}, []string{"192.168.1.101", "studio-a"}},
		{"glob", []string{"studio-*", "lobby"}, []string{"studio-a", "studio-b", "lobby"}, []string{"lobby-2", "office"}},
		{"empty", []string{}, nil, []string{"studio-a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := hs256(t, claims(func(c jwt.MapClaims) {
				if tt.devices != nil {
					c["devices"] = tt.devices
				}
			}))
			c, err := v.Verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range tt.allowed {
				if !c.AllowsDevice(d) {
					t.Errorf("device %q refused", d)
				}
			}
			for _, d := range tt.refused {
				if c.AllowsDevice(d) {
					t.Errorf("device %q allowed", d)
				}
			}
		})
	}
}

func TestTokenFromRequest(t *testing.T) {
	tests := []struct {
		name   string
		header map[string]string
		query  string
		want   string
	}{
		{"none", nil, "", ""},
		{"bearer", map[string]string{"Authorization": "Bearer abc"}, "", "abc"},
		{"bearer lowercase scheme", map[string]string{"Authorization": "bearer abc"}, "", "abc"},
		{"x-auth-token", map[string]string{"X-Auth-Token": "def"}, "", "def"},
		{"query", nil, "token=ghi", "ghi"},
		{"bearer wins", map[string]string{"Authorization": "Bearer abc", "X-Auth-Token": "def"}, "token=ghi", "abc"},
		{"header before query", map[string]string{"X-Auth-Token": "def"}, "token=ghi", "def"},
		{"basic is not a token", map[string]string{"Authorization": "Basic eDp5"}, "token=ghi", "ghi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/ws?"+tt.query, nil)
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			if got := TokenFromRequest(r); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAuthenticateCarriers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JWTSecret = testSecret
	v := newVerifier(t, cfg)
	tok := hs256(t, claims(nil))
	for name, set := range map[string]func(r *http.Request){
		"bearer": func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) },
		"header": func(r *http.Request) { r.Header.Set("X-Auth-Token", tok) },
		"query":  func(r *http.Request) { r.URL.RawQuery = "token=" + tok },
	} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			set(r)
			c, err := v.Authenticate(r)
			if err != nil || c.Subject != "dash-1" {
				t.Fatalf("claims %+v, err %v", c, err)
			}
		})
	}
}

// writePEM writes a public key as a PEM file and returns its path.
func writePEM(t *testing.T, name string, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAsymmetricAlgorithms(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := writePEM(t, "rsa.pem", &rsaKey.PublicKey)
	tests := []struct {
		alg    string
		method jwt.SigningMethod
		priv   any
		pemf   string
	}{
		{RS256, jwt.SigningMethodRS256, rsaKey, rsaPEM},
		{ES256, jwt.SigningMethodES256, ecKey, writePEM(t, "ec.pem", &ecKey.PublicKey)},
		{EdDSA, jwt.SigningMethodEdDSA, edPriv, writePEM(t, "ed.pem", edPub)},
	}
	for _, tt := range tests {
		t.Run(tt.alg, func(t *testing.T) {
			t.Setenv(SecretEnv, "")
			v := newVerifier(t, Config{Algorithms: []string{tt.alg}, PublicKeys: []string{tt.pemf}})
			if _, err := readAccess(v, sign(t, tt.method, tt.priv, claims(nil))); err != nil {
				t.Fatalf("valid %s token refused: %v", tt.alg, err)
			}
			// An HS256 token is refused even when signed with the public
			// key's PEM bytes (algorithm confusion).
			pemBytes, _ := os.ReadFile(tt.pemf)
			if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, pemBytes, claims(nil))); !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("HS256 token signed with the public key accepted: %v", err)
			}
		})
	}

	t.Run("confusion with HS256 also configured", func(t *testing.T) {
		v := newVerifier(t, Config{Algorithms: []string{RS256, HS256}, PublicKeys: []string{rsaPEM}, JWTSecret: testSecret})
		pemBytes, _ := os.ReadFile(rsaPEM)
		if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, pemBytes, claims(nil))); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("HS256 token signed with the RSA public key accepted: %v", err)
		}
		if _, err := v.Verify(hs256(t, claims(nil))); err != nil {
			t.Fatalf("HS256 token refused: %v", err)
		}
		if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil))); err != nil {
			t.Fatalf("RS256 token refused: %v", err)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		v := newVerifier(t, Config{Algorithms: []string{ES256}, PublicKeys: []string{writePEM(t, "ec.pem", &ecKey.PublicKey)}})
		if _, err := v.Verify(sign(t, jwt.SigningMethodES256, other, claims(nil))); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("token of another key accepted: %v", err)
		}
	})
}

func TestIssuerAudience(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JWTSecret = testSecret
	cfg.Issuer = "auth.example"
	cfg.Audience = "pearld"
	v := newVerifier(t, cfg)
	tests := []struct {
		name string
		mut  func(c jwt.MapClaims)
		ok   bool
	}{
		{"both match", func(c jwt.MapClaims) { c["iss"] = "auth.example"; c["aud"] = "pearld" }, true},
		{"audience in list", func(c jwt.MapClaims) { c["iss"] = "auth.example"; c["aud"] = []string{"other", "pearld"} }, true},
		{"missing iss", func(c jwt.MapClaims) { c["aud"] = "pearld" }, false},
		{"wrong iss", func(c jwt.MapClaims) { c["iss"] = "evil"; c["aud"] = "pearld" }, false},
		{"missing aud", func(c jwt.MapClaims) { c["iss"] = "auth.example" }, false},
		{"wrong aud", func(c jwt.MapClaims) { c["iss"] = "auth.example"; c["aud"] = "other" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(hs256(t, claims(tt.mut)))
			if (err == nil) != tt.ok {
				t.Fatalf("err %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestNewVerifierErrors(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaPEM := writePEM(t, "rsa.pem", &rsaKey.PublicKey)
	privPEM := filepath.Join(t.TempDir(), "priv.pem")
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err := os.WriteFile(privPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no secret", Config{}, "HS256 needs a secret: set jwt_secret or the JWT_SECRET environment variable"},
		{"short secret", Config{JWTSecret: "short"}, "the secret is 5 bytes, HS256 needs at least 32"},
		{"short for HS512", Config{JWTSecret: testSecret, Algorithms: []string{HS256, HS512}}, "HS512 needs at least 64"},
		{"alg none", Config{JWTSecret: testSecret, Algorithms: []string{"none"}}, `unknown algorithm "none"`},
		{"unknown alg", Config{JWTSecret: testSecret, Algorithms: []string{"PS256"}}, `unknown algorithm "PS256"`},
		{"RS256 without key", Config{Algorithms: []string{RS256}}, "RS256 needs a public key"},
		{"key of another algorithm", Config{Algorithms: []string{ES256}, PublicKeys: []string{rsaPEM}}, "a RS256 key, but algorithms does not list RS256"},
		{"private key", Config{Algorithms: []string{RS256}, PublicKeys: []string{privPEM}}, "holds a private key"},
		{"missing file", Config{Algorithms: []string{RS256}, PublicKeys: []string{"/nonexistent.pem"}}, "reading public key"},
		{"negative leeway", Config{JWTSecret: testSecret, Leeway: engine.Duration(-time.Second)}, "leeway -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(SecretEnv, "")
			_, err := NewVerifier(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSecretFromEnv(t *testing.T) {
	t.Setenv(SecretEnv, testSecret)
	v := newVerifier(t, DefaultConfig())
	if _, err := v.Verify(hs256(t, claims(nil))); err != nil {
		t.Fatalf("token signed with JWT_SECRET refused: %v", err)
	}
}

func TestMint(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JWTSecret = testSecret
	cfg.Issuer, cfg.Audience = "pearld", "dashboards"
	v := newVerifier(t, cfg)
	tok, err := Mint([]byte(testSecret), MintOptions{
		Subject: "ops", Name: "Ops", Email: "ops@example.com",
		Permissions: Permissions{RealtimeData: true, PublisherControl: true},
		Devices:     []string{"studio-*"}, TTL: time.Hour, Issuer: "pearld", Audience: "dashboards",
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "ops" || c.Name != "Ops" || c.Email != "ops@example.com" || !c.CanRead() || !c.CanControl() || c.IsAdmin() ||
		!slices.Equal(c.Devices, []string{"studio-*"}) || time.Until(c.ExpiresAt) < 59*time.Minute {
		t.Fatalf("claims %+v", c)
	}

	for name, o := range map[string]MintOptions{
		"no subject": {TTL: time.Hour},
		"no ttl":     {Subject: "x"},
	} {
		if _, err := Mint([]byte(testSecret), o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Mint([]byte("short"), MintOptions{Subject: "x", TTL: time.Hour}); err == nil {
		t.Error("short secret: no error")
	}
}

func TestReasonAndStatus(t *testing.T) {
	if Reason(nil) != "" || HTTPStatus(nil) != http.StatusOK {
		t.Fatal("nil error")
	}
	if Reason(ErrForbidden) != ReasonForbidden || HTTPStatus(ErrForbidden) != http.StatusForbidden {
		t.Fatal("forbidden")
	}
	err := errors.New("anything")
	if Reason(err) != ReasonUnauthenticated || HTTPStatus(err) != http.StatusUnauthorized {
		t.Fatal("other error")
	}
}
