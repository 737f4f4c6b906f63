package plugins

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
)

// The test binary doubles as a small pearld: run with envDaemon set to a
// pipeline file, it runs that pipeline (plugins from envDaemonDir) until
// SIGTERM, and prints "ready" once it started.
const (
	envDaemon    = "PEARLD_PLUGINS_TEST_DAEMON"
	envDaemonDir = "PEARLD_PLUGINS_TEST_DIR"
)

func runDaemon(file, dir string) int {
	pluginsDir = dir
	e := engine.New(engine.Options{Registry: registry(&recorder{}), PluginsDir: dir})
	if err := e.Start([]string{file}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = e.Stop(sctx)
	return 0
}

// TestNoOrphans kills a daemon running plugins with SIGKILL, which gives it
// no chance to stop them: the kernel's parent-death signal must end them,
// even the one that is frozen (SIGSTOP) and so cannot notice anything.
func TestNoOrphans(t *testing.T) {
	file := writeFile(t, "test.toml", `
[devices.d]
address = "127.0.0.1:1"

[sources.a]
type     = "plugin"
plugin   = "counter"
interval = "100ms"

[sources.b]
type     = "plugin"
plugin   = "hang"

[sources.c]
type     = "plugin"
plugin   = "freeze"

[sinks.out]
type   = "record"
inputs = ["a", "b", "c"]
`)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envDaemon+"="+file, envDaemonDir+"="+pluginsDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("daemon said %q", line)
	}
	var plugins []int
	waitFor(t, "three plugin processes, one of them frozen", 10*time.Second, func() bool {
		plugins = children(cmd.Process.Pid)
		frozen := false
		for _, pid := range plugins {
			frozen = frozen || state(pid) == 'T'
		}
		return len(plugins) == 3 && frozen
	})

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitFor(t, "the plugins to die with the daemon", 2*time.Second, func() bool {
		for _, pid := range plugins {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}
