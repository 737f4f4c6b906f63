package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, which
// Linux fixes at 100 for every architecture user space sees.
const userHZ = 100

// ProcStat is what the bench reads of /proc/<pid>/stat.
type ProcStat struct {
	User, System time.Duration // CPU time of the process, all threads
	Threads      int
	RSSPages     int64
}

// CPU returns user plus system time.
func (s ProcStat) CPU() time.Duration { return s.User + s.System }

// parseProcStat parses the contents of /proc/<pid>/stat. The command name
// is in parentheses and may itself hold spaces and parentheses, so fields
// are counted from the last ')'.
func parseProcStat(b []byte) (ProcStat, error) {
	var s ProcStat
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("parsing /proc stat: no command name")
	}
	// After ") ": state(3) ppid(4) ... utime(14) stime(15) ...
	// num_threads(20) ... rss(24); index 0 is field 3.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22 {
		return s, fmt.Errorf("parsing /proc stat: %d fields after the command, want at least 22", len(f))
	}
	num := func(k int) (int64, error) {
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc stat field %d: %w", k+3, err)
		}
		return v, nil
	}
	ut, err := num(11)
	if err != nil {
		return s, err
	}
	st, err := num(12)
	if err != nil {
		return s, err
	}
	th, err := num(17)
	if err != nil {
		return s, err
	}
	rss, err := num(21)
	if err != nil {
		return s, err
	}
	tick := time.Second / userHZ
	s.User, s.System = time.Duration(ut)*tick, time.Duration(st)*tick
	s.Threads, s.RSSPages = int(th), rss
	return s, nil
}

// readProcStat reads /proc/<pid>/stat.
func readProcStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, fmt.Errorf("reading process stat: %w", err)
	}
	return parseProcStat(b)
}

// ProcStatus is what the bench reads of /proc/<pid>/status, in bytes.
type ProcStatus struct {
	RSS     int64 `json:"rss_bytes"`      // VmRSS
	HWM     int64 `json:"rss_peak_bytes"` // VmHWM
	RSSAnon int64 `json:"rss_anon_bytes"` // RssAnon
	Threads int   `json:"threads"`
}

// parseProcStatus parses the contents of /proc/<pid>/status.
func parseProcStatus(b []byte) (ProcStatus, error) {
	var s ProcStatus
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		switch name {
		case "VmRSS":
			s.RSS = v
			found++
		case "VmHWM":
			s.HWM = v
		case "RssAnon":
			s.RSSAnon = v
		case "Threads":
			s.Threads = int(v)
		}
	}
	if found == 0 {
		return s, fmt.Errorf("parsing /proc status: no VmRSS")
	}
	return s, nil
}

// readProcStatus reads /proc/<pid>/status.
func readProcStatus(pid int) (ProcStatus, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcStatus{}, fmt.Errorf("reading process status: %w", err)
	}
	return parseProcStatus(b)
}

// Machine describes where the figures were measured.
type Machine struct {
	CPUs      int    `json:"cpus"` // processors in /proc/cpuinfo (nproc without affinity)
	Model     string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
}

// parseCPUInfo returns the number of processors and the first model name
// of /proc/cpuinfo.
func parseCPUInfo(b []byte) (n int, model string) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(name) {
		case "processor":
			n++
		case "model name":
			if model == "" {
				model = strings.TrimSpace(val)
			}
		}
	}
	return n, model
}

// machine reads the description of this machine.
func machine() Machine {
	m := Machine{GoVersion: runtime.Version(), CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if n, model := parseCPUInfo(b); n > 0 {
			m.CPUs, m.Model = n, model
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// cpuTimes are the busy and total times of one line of /proc/stat, and
// the part of busy spent in softirq (on loopback, the TCP receive path of
// the other end of every write runs there, on the writer's CPU).
type cpuTimes struct {
	Busy, Total, SoftIRQ time.Duration
}

// parseSystemStat returns the times of every "cpu" line of /proc/stat:
// "cpu" is the sum, "cpu0"... each CPU. Busy is all but idle and iowait.
func parseSystemStat(b []byte) (map[string]cpuTimes, error) {
	out := map[string]cpuTimes{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		var t cpuTimes
		tick := time.Second / userHZ
		// user nice system idle iowait irq softirq steal guest guest_nice;
		// guest time is already counted in user.
		for i, s := range f[1:min(len(f), 9)] {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parsing /proc/stat %s: %w", f[0], err)
			}
			d := time.Duration(v) * tick
			t.Total += d
			if i != 3 && i != 4 {
				t.Busy += d
			}
			if i == 6 {
				t.SoftIRQ = d
			}
		}
		out[f[0]] = t
	}
	if _, ok := out["cpu"]; !ok {
		return nil, fmt.Errorf("parsing /proc/stat: no cpu line")
	}
	return out, nil
}

// readSystemStat reads /proc/stat.
func readSystemStat() (map[string]cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, fmt.Errorf("reading /proc/stat: %w", err)
	}
	return parseSystemStat(b)
}

// cpuMeter measures, over a window, the CPU of the server, of the bench
// and of everything else on the machine (other users of a shared host),
// so that a result can say whether it was disturbed.
type cpuMeter struct {
	serverPID, pin  int
	server0, bench0 time.Duration
	sys0            map[string]cpuTimes
	start           time.Time
}

// CPUUse is what a cpuMeter measured, in percent of one CPU.
type CPUUse struct {
	Server float64 `json:"server_percent"`
	Bench  float64 `json:"bench_percent"`
	// Others is the rest of the machine's busy time: other processes,
	// and interrupts not charged to a process.
	Others float64 `json:"others_percent"`
	// OthersOnServerCPU is, with -pin, the busy time of the server's CPU
	// not charged to the server process, softirq included.
	OthersOnServerCPU float64 `json:"others_on_server_cpu_percent,omitempty"`
	// SoftIRQ is the softirq time of the server's CPU with -pin, else of
	// the machine. /proc/<pid>/stat does not charge it to the process;
	// on loopback it holds the clients' TCP receive work.
	SoftIRQ       float64 `json:"softirq_percent"`
	ServerSeconds float64 `json:"server_cpu_seconds"`
}

func startCPUMeter(serverPID, pin int) (*cpuMeter, error) {
	m := &cpuMeter{serverPID: serverPID, pin: pin, start: time.Now()}
	st, err := readProcStat(serverPID)
	if err != nil {
		return nil, err
	}
	m.server0 = st.CPU()
	if b, err := readProcStat(os.Getpid()); err == nil {
		m.bench0 = b.CPU()
	}
	m.sys0, _ = readSystemStat()
	return m, nil
}

// stop returns the use since start, and the server's CPU time.
func (m *cpuMeter) stop() (CPUUse, time.Duration, error) {
	el := time.Since(m.start)
	st, err := readProcStat(m.serverPID)
	if err != nil {
		return CPUUse{}, 0, err
	}
	server := st.CPU() - m.server0
	var bench time.Duration
	if b, err := readProcStat(os.Getpid()); err == nil {
		bench = b.CPU() - m.bench0
	}
	pct := func(d time.Duration) float64 { return round(100*d.Seconds()/el.Seconds(), 1) }
	u := CPUUse{Server: pct(server), Bench: pct(bench), ServerSeconds: round(server.Seconds(), 2)}
	if sys1, err := readSystemStat(); err == nil && m.sys0 != nil {
		busy := sys1["cpu"].Busy - m.sys0["cpu"].Busy
		u.Others = max(pct(busy-server-bench), 0)
		u.SoftIRQ = pct(sys1["cpu"].SoftIRQ - m.sys0["cpu"].SoftIRQ)
		if m.pin >= 0 {
			name := "cpu" + strconv.Itoa(m.pin)
			if a, ok := m.sys0[name]; ok {
				u.OthersOnServerCPU = max(pct(sys1[name].Busy-a.Busy-server), 0)
				u.SoftIRQ = pct(sys1[name].SoftIRQ - a.SoftIRQ)
			}
		}
	}
	return u, server, nil
}
