package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzTokenFromRequest checks token extraction from the three carriers:
// it never panics, returns a token without surrounding space, and follows
// the order of PROTOCOL.md: a non-empty `Authorization: Bearer` token
// wins, then X-Auth-Token, then the `token` query parameter; nothing else
// (another scheme, another parameter) is ever returned.
func FuzzTokenFromRequest(f *testing.F) {
	f.Add("Bearer abc.def.ghi", "", "")
	f.Add("bearer   abc ", "xyz", "token=q")
	f.Add("Basic YWRtaW46", "xyz", "")
	f.Add("Bearer ", "", "token=a+b%20c&token=second")
	f.Add("", "  ", "x=1&token=%zz")
	f.Add("", "", "mytoken=abc&token=")
	f.Add("Bearer\tabc", "", ";token=abc")
	f.Add("Bearer a b", "", "token=%E2%98%83")
	f.Fuzz(func(t *testing.T, authz, xauth, rawQuery string) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{RawQuery: rawQuery}}
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		if xauth != "" {
			r.Header.Set("X-Auth-Token", xauth)
		}
		got := TokenFromRequest(r)
		if got != strings.TrimSpace(got) {
			t.Fatalf("token %q has surrounding space", got)
		}
		// The expected token, computed independently.
		want := ""
		h := strings.TrimSpace(r.Header.Get("Authorization"))
		if i := strings.IndexByte(h, ' '); i >= 0 && strings.EqualFold(h[:i], "bearer") {
			want = strings.TrimSpace(h[i+1:])
		}
		if want == "" {
			want = strings.TrimSpace(r.Header.Get("X-Auth-Token"))
		}
		if want == "" {
			if q, err := url.ParseQuery(rawQuery); err == nil || q.Has("token") {
				want = strings.TrimSpace(q.Get("token"))
			}
		}
		if got != want {
			t.Fatalf("TokenFromRequest(Authorization %q, X-Auth-Token %q, query %q) = %q, want %q", authz, xauth, rawQuery, got, want)
		}
	})
}

// fuzzSecret signs the HS256 tokens of FuzzVerify's corpus; fuzzEdSeed is
// the seed of its Ed25519 key. Both are fixed so that the corpus files
// stay valid.
const fuzzSecret = "fuzz-secret-of-at-least-32-bytes-0123456789"

var fuzzEdSeed = bytes.Repeat([]byte{7}, ed25519.SeedSize)

// FuzzVerify checks token parsing and verification, with a verifier that
// accepts HS256 (the shared secret) and EdDSA (a public key). Invariants:
// Verify never panics; every refusal wraps ErrUnauthenticated; and a token
// it accepts is, checked independently, a three-part compact JWS whose
// header names HS256 or EdDSA, whose signature is that algorithm's over
// the first two parts with the configured key (so `alg: none`, other
// algorithms and algorithm confusion never pass), whose claims are a JSON
// object with a non-empty sub, an iat, and an exp not past (with the
// leeway), and whose permissions and devices are what Claims says.
func FuzzVerify(f *testing.F) {
	edKey := ed25519.NewKeyFromSeed(fuzzEdSeed)
	now := time.Now()
	hs := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(fuzzSecret))
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	valid := jwt.MapClaims{"sub": "dash", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"permissions": map[string]any{"realtime_data": true, "admin": false}, "devices": []string{"studio-*"}}
	f.Add(hs(valid))
	f.Add(hs(jwt.MapClaims{"sub": "x", "iat": now.Unix(), "exp": now.Add(-time.Hour).Unix()}))
	f.Add(hs(jwt.MapClaims{"sub": "", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}))
	f.Add(hs(jwt.MapClaims{"sub": "x", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "devices": []string{"["}}))
	f.Add(hs(jwt.MapClaims{"sub": "x", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "permissions": map[string]any{"admin": "true"}}))
	f.Add(hs(jwt.MapClaims{"sub": "x", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "devices": nil}))
	if s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, valid).SignedString(edKey); err == nil {
		f.Add(s)
	}
	if s, err := jwt.NewWithClaims(jwt.SigningMethodHS512, valid).SignedString([]byte(fuzzSecret + fuzzSecret)); err == nil {
		f.Add(s)
	}
	if s, err := jwt.NewWithClaims(jwt.SigningMethodNone, valid).SignedString(jwt.UnsafeAllowNoneSignatureType); err == nil {
		f.Add(s)
	}
	// Algorithm confusion: HS256 keyed with the public key's bytes.
	if s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, valid).SignedString([]byte(edKey.Public().(ed25519.PublicKey))); err == nil {
		f.Add(s)
	}
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJIUzI1NiJ9..")
	f.Add("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.")

	v := fuzzVerifier(f, edKey.Public().(ed25519.PublicKey))
	pub := edKey.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token)
		if err != nil {
			if c != nil || !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("Verify(%q) = %v, %v: a refusal must wrap ErrUnauthenticated and return no claims", token, c, err)
			}
			return
		}
		if msg := checkAccepted(token, c, pub, time.Now()); msg != "" {
			t.Fatalf("Verify accepted %q: %s", token, msg)
		}
	})
}

// fuzzVerifier returns a verifier of HS256 tokens signed with fuzzSecret
// and EdDSA tokens signed with the key of pub.
func fuzzVerifier(tb testing.TB, pub ed25519.PublicKey) *Verifier {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	file := filepath.Join(tb.TempDir(), "ed25519.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.JWTSecret = fuzzSecret
	cfg.Algorithms = []string{HS256, EdDSA}
	cfg.PublicKeys = []string{file}
	v, err := NewVerifier(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// checkAccepted checks, without the jwt library, that an accepted token
// deserved it and that c is what it says.
func checkAccepted(token string, c *Claims, pub ed25519.PublicKey, now time.Time) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "not three parts"
	}
	dec := func(s string) ([]byte, error) {
		// Padding is tolerated by some decoders; the bytes are what count.
		return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	hb, err1 := dec(parts[0])
	pb, err2 := dec(parts[1])
	sig, err3 := dec(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return "parts are not base64url: " + err.Error()
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &header); err != nil {
		return "header is not JSON: " + err.Error()
	}
	signed := []byte(parts[0] + "." + parts[1])
	switch header.Alg {
	case HS256:
		m := hmac.New(sha256.New, []byte(fuzzSecret))
		m.Write(signed)
		if !hmac.Equal(m.Sum(nil), sig) {
			return "HS256 signature does not match"
		}
	case EdDSA:
		if !ed25519.Verify(pub, signed, sig) {
			return "EdDSA signature does not match"
		}
	default:
		return "algorithm " + header.Alg + " is not configured"
	}
	var claims struct {
		Sub         *string          `json:"sub"`
		Iat         *json.Number     `json:"iat"`
		Exp         *json.Number     `json:"exp"`
		Permissions *json.RawMessage `json:"permissions"`
		Devices     *json.RawMessage `json:"devices"`
	}
	d := json.NewDecoder(bytes.NewReader(pb))
	d.UseNumber()
	if err := d.Decode(&claims); err != nil {
		return "claims are not a JSON object: " + err.Error()
	}
	switch {
	case claims.Sub == nil || *claims.Sub == "" || *claims.Sub != c.Subject:
		return "sub missing, empty or not the subject"
	case claims.Iat == nil:
		return "no iat"
	case claims.Exp == nil:
		return "no exp"
	}
	exp, err := claims.Exp.Float64()
	if err != nil || now.Add(-DefaultLeeway-time.Second).After(time.Unix(int64(exp), 0)) {
		return "exp is past: " + claims.Exp.String()
	}
	var perms map[string]any
	if claims.Permissions != nil {
		_ = json.Unmarshal(*claims.Permissions, &perms)
	}
	for name, got := range map[string]bool{
		"realtime_data": c.Permissions.RealtimeData, "audio_streams": c.Permissions.AudioStreams,
		"admin": c.Permissions.Admin, "publisher_control": c.Permissions.PublisherControl,
	} {
		if want := perms[name] == true; got != want {
			return "permission " + name + " is not what the token says"
		}
	}
	var devices []string
	hasDevices := claims.Devices != nil && string(*claims.Devices) != "null"
	if hasDevices {
		if err := json.Unmarshal(*claims.Devices, &devices); err != nil {
			return "devices claim is not a list of strings"
		}
	}
	if hasDevices != (c.Devices != nil) || len(devices) != len(c.Devices) {
		return "devices claim is not what the token says"
	}
	for i := range devices {
		if devices[i] != c.Devices[i] {
			return "devices claim is not what the token says"
		}
	}
	return ""
}
