package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pearld/pearld/engine/auth"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func cmdToken(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", stderr)
	secret := fs.String("secret", "", "HS256 secret (default: the JWT_SECRET environment variable)")
	sub := fs.String("sub", "", "subject: who the token is for (required)")
	name := fs.String("name", "", "display name")
	email := fs.String("email", "", "e-mail address")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime")
	var perms, devices stringList
	fs.Var(&perms, "perm", "permission to grant, repeatable: realtime_data, audio_streams, publisher_control, admin (default realtime_data)")
	fs.Var(&devices, "device", "limit the token to a device id or glob, repeatable (default: all devices)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *secret == "" {
		*secret = os.Getenv("JWT_SECRET")
	}
	if *secret == "" {
		fmt.Fprintln(stderr, "pearld token: give --secret or set JWT_SECRET")
		return errUsage
	}
	if *sub == "" {
		fmt.Fprintln(stderr, "pearld token: --sub is required")
		return errUsage
	}
	if len(perms) == 0 {
		perms = stringList{"realtime_data"}
	}
	t, err := mintToken(*secret, *sub, *name, *email, perms, devices, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, t)
	return nil
}

// mintToken mints an HS256 token; perms are permission names.
func mintToken(secret, sub, name, email string, perms, devices []string, ttl time.Duration) (string, error) {
	var p auth.Permissions
	for _, n := range perms {
		switch n {
		case "realtime_data":
			p.RealtimeData = true
		case "audio_streams":
			p.AudioStreams = true
		case "publisher_control":
			p.PublisherControl = true
		case "admin":
			p.Admin = true
		default:
			return "", fmt.Errorf("unknown permission %q (known: realtime_data, audio_streams, publisher_control, admin)", n)
		}
	}
	return auth.Mint([]byte(secret), auth.MintOptions{Subject: sub, Name: name, Email: email, Permissions: p, Devices: devices, TTL: ttl})
}

// statusAdmin lets callers with an admin token signed with JWT_SECRET see
// error details in /status; without JWT_SECRET nobody can.
func statusAdmin() func(*http.Request) bool {
	return adminCheck(os.Getenv("JWT_SECRET"))
}

func adminCheck(secret string) func(*http.Request) bool {
	if secret == "" {
		return nil
	}
	v, err := auth.NewVerifier(auth.Config{JWTSecret: secret, Algorithms: []string{auth.HS256}})
	if err != nil {
		return nil
	}
	return func(r *http.Request) bool {
		c, err := v.Authenticate(r)
		return err == nil && c.IsAdmin()
	}
}
