package plugins

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin/runner"
)

// procRunner runs a plugin binary for go-plugin (its runner.Runner). Unlike
// go-plugin's own runner it
//   - starts the process from a goroutine locked to its OS thread for the
//     process's whole life, so that the parent-death signal set on Linux
//     (see setProcAttr) fires only when pearld itself dies: Linux sends it
//     when the *thread* that forked the child exits;
//   - puts the plugin in its own process group and kills the whole group;
//   - lets through to go-plugin only the handshake line of the plugin's
//     stdout, and reports every other line as junk instead of failing the
//     handshake;
//   - keeps the last lines of the plugin's stderr, to explain a plugin that
//     died before it served (a panic at start).
type procRunner struct {
	cmd  *exec.Cmd
	path string
	junk func(line []byte)

	stdout  io.ReadCloser
	stderr  *tailReader
	exited  chan struct{} // closed once the process was waited for
	waitErr error
	pid     atomic.Int64
}

var _ runner.Runner = (*procRunner)(nil)

// handshakeLine matches go-plugin's handshake:
// CORE-VERSION|APP-VERSION|NETWORK|ADDR|PROTOCOL|CERT.
var handshakeLine = regexp.MustCompile(`^\d+\|\d+\|(tcp|unix)\|[^|]+\|`)

func newProcRunner(cmd *exec.Cmd, junk func([]byte)) *procRunner {
	return &procRunner{cmd: cmd, path: cmd.Path, junk: junk, exited: make(chan struct{})}
}

// Start starts the process.
func (r *procRunner) Start(context.Context) error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("starting %s: %w", r.path, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fmt.Errorf("starting %s: %w", r.path, err)
	}
	r.cmd.Stdin = nil // /dev/null: pearld's stdin is not the plugin's
	r.cmd.Stdout, r.cmd.Stderr = outW, errW
	setProcAttr(r.cmd)

	started := make(chan error, 1)
	go func() {
		defer close(r.exited)
		// Never unlocked: the thread ends with this goroutine, once the
		// child has exited, so it lives exactly as long as the child.
		runtime.LockOSThread()
		if err := r.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		r.waitErr = r.cmd.Wait()
	}()
	err = <-started
	// The child holds its own copies of the write ends: the reads below
	// end when it (and whatever inherited them) exits.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return fmt.Errorf("starting %s: %w", r.path, err)
	}
	r.pid.Store(int64(r.cmd.Process.Pid))
	pr, pw := io.Pipe()
	r.stdout = pr
	go r.filterStdout(outR, pw)
	r.stderr = newTailReader(errR)
	return nil
}

// filterStdout passes the handshake line on to go-plugin and reports
// every other line as junk.
func (r *procRunner) filterStdout(in *os.File, out *io.PipeWriter) {
	defer in.Close()
	defer out.Close()
	br := bufio.NewReaderSize(in, maxLine)
	shook := false
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			if !shook && handshakeLine.Match(line) {
				shook = true
				if _, werr := out.Write(append(line, '\n')); werr != nil {
					shook = false // go-plugin stopped reading: report the rest
				}
			} else {
				r.junk(line)
			}
		}
		if err != nil {
			return
		}
	}
}

// readLine reads one line without its end, cutting it at the reader's
// buffer size and discarding the rest.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	out := append([]byte(nil), bytes.TrimRight(line, "\r\n")...)
	for errors.Is(err, bufio.ErrBufferFull) {
		_, err = br.ReadSlice('\n')
	}
	return out, err
}

// Wait waits for the process to exit.
func (r *procRunner) Wait(context.Context) error {
	<-r.exited
	return r.waitErr
}

// Kill kills the process and its process group. It may be called from
// any goroutine, any number of times.
func (r *procRunner) Kill(context.Context) error {
	pid := r.PID()
	if pid == 0 {
		return nil
	}
	select {
	case <-r.exited:
		return nil // waited for: the pid may be someone else's now
	default:
	}
	killGroup(pid)
	proc, err := os.FindProcess(pid)
	if err == nil {
		err = proc.Kill()
	}
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Exited is closed once the process exited.
func (r *procRunner) Exited() <-chan struct{} { return r.exited }

// PID returns the process id, 0 before Start.
func (r *procRunner) PID() int { return int(r.pid.Load()) }

func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *procRunner) Name() string          { return r.path }
func (r *procRunner) ID() string            { return strconv.Itoa(r.PID()) }

// Diagnose explains a failed handshake.
func (r *procRunner) Diagnose(context.Context) string {
	return "the binary must be a pearld plugin built with the sdk for this platform (sdk.Serve in main)"
}

func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// death describes why a process that ended early did so: its exit status
// and, from its stderr, the panic or the last line it wrote. It waits a
// moment for the process and its stderr to end.
func (r *procRunner) death() string {
	select {
	case <-r.exited:
	case <-time.After(2 * time.Second):
		return "still running"
	}
	r.stderr.wait(time.Second)
	var parts []string
	if r.waitErr != nil {
		parts = append(parts, r.waitErr.Error())
	} else {
		parts = append(parts, "exit status 0")
	}
	if last := r.stderr.cause(); last != "" {
		parts = append(parts, last)
	}
	return strings.Join(parts, ": ")
}

// tailReader passes a plugin's stderr on to go-plugin and keeps its last
// lines.
type tailReader struct {
	r    io.ReadCloser
	done chan struct{}

	mu      sync.Mutex
	partial []byte
	lines   []string
	eof     bool
}

const tailLines = 32

func newTailReader(r io.ReadCloser) *tailReader {
	return &tailReader{r: r, done: make(chan struct{})}
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	data := p[:n]
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			t.partial = append(t.partial, data[:min(len(data), max(0, maxLine-len(t.partial)))]...)
			break
		}
		t.partial = append(t.partial, data[:min(i, max(0, maxLine-len(t.partial)))]...)
		t.push()
		data = data[i+1:]
	}
	if err != nil && !t.eof {
		t.eof = true
		t.push()
		close(t.done)
	}
	return n, err
}

func (t *tailReader) push() {
	line := strings.TrimSpace(string(t.partial))
	t.partial = t.partial[:0]
	if line == "" {
		return
	}
	if len(t.lines) == tailLines {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, line)
}

func (t *tailReader) Close() error { return t.r.Close() }

func (t *tailReader) wait(d time.Duration) {
	select {
	case <-t.done:
	case <-time.After(d):
	}
}

// cause returns the panic line of the tail, or else its last line that is
// not a structured log record.
func (t *tailReader) cause() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range t.lines {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			return l
		}
	}
	for i := len(t.lines) - 1; i >= 0; i-- {
		if l := t.lines[i]; !strings.HasPrefix(l, "{") {
			return l
		}
	}
	if n := len(t.lines); n > 0 {
		return t.lines[n-1]
	}
	return ""
}
