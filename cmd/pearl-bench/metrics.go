package main

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// parseMetrics reads the Prometheus text format and returns, for each
// metric name, the sum of its samples over every label set. That is all
// the bench needs: gauges without labels (go_memstats_*, go_goroutines)
// and totals of labelled counters.
func parseMetrics(b []byte) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		name, rest := s, ""
		if i := strings.IndexAny(s, "{ "); i >= 0 {
			name, rest = s[:i], s[i:]
		}
		if strings.HasPrefix(rest, "{") {
			// Label values may hold '}' inside quotes.
			end, inQuote := -1, false
			for i := 1; i < len(rest) && end < 0; i++ {
				switch c := rest[i]; {
				case c == '\\' && inQuote:
					i++
				case c == '"':
					inQuote = !inQuote
				case c == '}' && !inQuote:
					end = i
				}
			}
			if end < 0 {
				return nil, fmt.Errorf("parsing metrics line %d: unterminated labels", line)
			}
			rest = rest[end+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("parsing metrics line %d: no value", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("parsing metrics line %d: %w", line, err)
		}
		out[name] += v
	}
	return out, sc.Err()
}
