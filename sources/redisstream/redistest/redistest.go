// Package redistest gives tests a real Redis server with keys of their
// own: New connects to the server of the PEARLD_TEST_REDIS URL (default
// redis://127.0.0.1:6379/0, which `make test` starts with
// scripts/ensure-redis.sh), hands out a prefix no other test uses, and
// deletes every key under it when the test ends.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultURL is the server tests use when PEARLD_TEST_REDIS is not set.
const DefaultURL = "redis://127.0.0.1:6379/0"

// Server is a test's view of the Redis server.
type Server struct {
	// URL is the server's URL, for pipeline files.
	URL string
	// Prefix is unique to the test: "pearld-test:NAME:RANDOM". Use it, or
	// keys under it, for every key the test writes.
	Prefix string
	// Client is connected to the server; it is closed at cleanup.
	Client *redis.Client
}

// New returns the server, failing the test when it does not answer. At
// cleanup every key under Prefix is deleted.
func New(t testing.TB) *Server {
	t.Helper()
	url := os.Getenv("PEARLD_TEST_REDIS")
	if url == "" {
		url = DefaultURL
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("redistest: PEARLD_TEST_REDIS: %v", err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Fatalf("redistest: no Redis server at %s (%v): run scripts/ensure-redis.sh, or set PEARLD_TEST_REDIS", opts.Addr, err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.NewReplacer("/", "_", " ", "_", "*", "_", "?", "_", "[", "_", "]", "_").Replace(t.Name())
	s := &Server{URL: url, Prefix: "pearld-test:" + name + ":" + hex.EncodeToString(b), Client: c}
	t.Cleanup(func() {
		if n, err := s.DeleteAll(context.Background()); err != nil {
			t.Errorf("redistest: deleting the test's keys (%d deleted): %v", n, err)
		}
		c.Close()
	})
	return s
}

// Keys returns the keys under the test's prefix, in no order.
func (s *Server) Keys(ctx context.Context) ([]string, error) {
	var out []string
	iter := s.Client.Scan(ctx, 0, s.Prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	return out, iter.Err()
}

// DeleteAll deletes every key under the test's prefix and returns how
// many it deleted.
func (s *Server) DeleteAll(ctx context.Context) (int, error) {
	keys, err := s.Keys(ctx)
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	n, err := s.Client.Del(ctx, keys...).Result()
	return int(n), err
}
