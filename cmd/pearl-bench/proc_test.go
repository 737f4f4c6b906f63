package main

import (
	"os"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    ProcStat
		wantErr bool
	}{
		{
			name: "plain",
			in:   "4242 (pearld) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 123456 1234567890 5120 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0",
			want: ProcStat{User: 2500 * time.Millisecond, System: 750 * time.Millisecond, Threads: 9, RSSPages: 5120},
		},
		{
			name: "command with spaces and parentheses",
			in:   "17 (a (b) c) R 1 17 17 0 -1 0 0 0 0 0 1 2 0 0 20 0 3 0 1 1 7 0",
			want: ProcStat{User: 10 * time.Millisecond, System: 20 * time.Millisecond, Threads: 3, RSSPages: 7},
		},
		{name: "no command", in: "17 R 1 2 3", wantErr: true},
		{name: "too short", in: "17 (x) R 1 2 3", wantErr: true},
		{name: "not a number", in: "17 (x) R 1 17 17 0 -1 0 0 0 0 0 x 2 0 0 20 0 3 0 1 1 7 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadProcStatSelf(t *testing.T) {
	// Burn a little CPU so that the process has some.
	deadline := time.Now().Add(30 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	st, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.Threads < 1 || st.RSSPages < 1 {
		t.Fatalf("implausible stat of this process: %+v", st)
	}
	status, err := readProcStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if status.RSS < 1<<20 || status.HWM < status.RSS || status.Threads < 1 {
		t.Fatalf("implausible status of this process: %+v", status)
	}
}

func TestParseProcStatus(t *testing.T) {
	in := `Name:	pearld
State:	S (sleeping)
VmPeak:	 1234 kB
VmHWM:	   30000 kB
VmRSS:	   20480 kB
RssAnon:	   10240 kB
Threads:	7
`
	got, err := parseProcStatus([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := ProcStatus{RSS: 20480 << 10, HWM: 30000 << 10, RSSAnon: 10240 << 10, Threads: 7}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := parseProcStatus([]byte("Name:\tx\n")); err == nil {
		t.Fatal("no error without VmRSS")
	}
}

func TestParseCPUInfo(t *testing.T) {
	in := "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	n, model := parseCPUInfo([]byte(in))
	if n != 2 || model != "AMD EPYC 7B13" {
		t.Fatalf("got %d %q", n, model)
	}
}

func TestParseSystemStat(t *testing.T) {
	in := `cpu  100 10 50 800 20 5 5 10 0 0
cpu0 60 5 25 400 10 3 2 5 0 0
cpu1 40 5 25 400 10 2 3 5 0 0
intr 12345
ctxt 999
`
	got, err := parseSystemStat([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	tick := time.Second / userHZ
	want := map[string]cpuTimes{
		"cpu":  {Busy: 180 * tick, Total: 1000 * tick, SoftIRQ: 5 * tick},
		"cpu0": {Busy: 100 * tick, Total: 510 * tick, SoftIRQ: 2 * tick},
		"cpu1": {Busy: 80 * tick, Total: 490 * tick, SoftIRQ: 3 * tick},
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %+v, want %+v", k, got[k], w)
		}
	}
	if _, err := parseSystemStat([]byte("intr 1\n")); err == nil {
		t.Fatal("no error without a cpu line")
	}
}
