// Command testplugin is a plugin for the host's tests. It behaves after
// the name it is installed under (the file name of its binary):
//
//	counter  emits a test_counter event for every poll, counting up by step
//	hang     never answers a poll, and ignores cancellation
//	freeze   stops itself (SIGSTOP) at its first poll: nothing answers
//	crashy   panics at start while a file crashy.marker lies beside it
//	junk     writes junk to stdout before serving and in every poll, and
//	         emits like counter
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/pearld/pearld/sdk"
)

func main() {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	name := filepath.Base(exe)
	switch name {
	case "crashy":
		if _, err := os.Stat(filepath.Join(filepath.Dir(exe), "crashy.marker")); err == nil {
			panic("crashy: boom at start")
		}
	case "junk":
		fmt.Println("hello from a plugin that prints before serving")
	}
	sdk.Serve(sdk.Plugin{
		Name:        name,
		Version:     "0.0.1",
		Description: "A plugin for tests.",
		DataTypes:   []string{"test_counter"},
		Fields: []sdk.Field{
			{Name: "step", Type: sdk.Int, Default: 1, Description: "how much the counter grows per poll"},
			{Name: "label", Type: sdk.String, Description: "copied into every event"},
		},
		New: func(cfg sdk.Config) (sdk.Source, error) {
			if cfg.Int("step") < 1 {
				return nil, sdk.BadOption("step", "must be at least 1, not %d", cfg.Int("step"))
			}
			cfg.Logger.Info("configured", "step", cfg.Int("step"))
			return &source{name: name, step: cfg.Int("step"), label: cfg.String("label"), n: map[string]int64{}}, nil
		},
	})
}

type source struct {
	name  string
	step  int64
	label string

	mu sync.Mutex
	n  map[string]int64
}

func (s *source) Poll(ctx context.Context, d *sdk.Device) ([]sdk.Event, error) {
	switch s.name {
	case "hang":
		select {} // ignores ctx on purpose
	case "freeze":
		_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	case "junk":
		fmt.Println("junk in a poll of", d.Name())
	}
	s.mu.Lock()
	s.n[d.Name()] += s.step
	n := s.n[d.Name()]
	s.mu.Unlock()
	return []sdk.Event{{Data: map[string]any{"n": n, "pid": os.Getpid(), "label": s.label}}}, nil
}
