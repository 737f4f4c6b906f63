package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateBadFiles(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"misspelled_key.bad.toml", `testdata/misspelled_key.bad.toml:6: sources.publishers: unknown key "sources.publishers.intervall"`},
		{"unknown_type.bad.toml", `testdata/unknown_type.bad.toml:4: sources.publishers: unknown source type "pearl_publisher_state" (known: `},
		{"unknown_input.bad.toml", `testdata/unknown_input.bad.toml:11: sinks.live: unknown input "change"`},
		{"cycle.bad.toml", `testdata/cycle.bad.toml:7: processors.changes: cycle: changes -> latest -> changes`},
		{"missing_variable.bad.toml", `testdata/missing_variable.bad.toml:3: environment variable PEARLD_TEST_UNSET_PASSWORD is not set`},
		{"unknown_device.bad.toml", `testdata/unknown_device.bad.toml:4: sources.publishers: matching devices: "studio-*" matches no device of the pipeline`},
	}
	files, _ := filepath.Glob("testdata/*.bad.toml")
	if len(files) != len(tests) {
		t.Errorf("%d bad files in testdata, %d in the table: every file needs its expected error", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run([]string{"validate", "testdata/" + tt.file}, &stdout, &stderr)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr\n%s\ndoes not contain\n%s", stderr.String(), tt.want)
			}
		})
	}
}

func TestValidateShippedPipelines(t *testing.T) {
	t.Setenv("JWT_SECRET", "a-secret-of-at-least-thirty-two-bytes!!")
	files, err := filepath.Glob("../../pipelines/*.toml")
	if err != nil || len(files) < 2 {
		t.Fatalf("shipped pipelines: %v %v", files, err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"validate"}, files...), &stdout, &stderr); code != 0 {
		t.Fatalf("pearld validate %v: exit %d\n%s", files, code, stderr.String())
	}
	for _, f := range files {
		if !strings.Contains(stdout.String(), f+": ok") {
			t.Errorf("no ok line for %s in\n%s", f, stdout.String())
		}
	}
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"frobnicate"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %s", code, stderr.String())
	}
	if code := run([]string{"validate"}, &stdout, &stderr); code != 2 {
		t.Errorf("validate without files: exit %d", code)
	}
	stdout.Reset()
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "pearld ") {
		t.Errorf("version: exit %d, %q", code, stdout.String())
	}
}
