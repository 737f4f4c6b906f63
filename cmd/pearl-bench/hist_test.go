package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	values := []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<40 + 12345, 1<<63 - 1}
	for range 10000 {
		values = append(values, rng.Uint64N(1<<rng.IntN(63)+1))
	}
	for _, v := range values {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside [0, %d)", v, i, numBuckets)
		}
		lo, hi := bucketBounds(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d of bounds [%d, %d]", v, i, lo, hi)
		}
		if lo > 0 && float64(hi-lo) > float64(lo)/64 {
			t.Fatalf("bucket %d [%d, %d] is wider than 1/64 of its bound", i, lo, hi)
		}
	}
	// Buckets tile the numbers: each starts right after the previous.
	for i := 1; i <= bucketOf(1<<62); i++ {
		_, prevHi := bucketBounds(i - 1)
		lo, _ := bucketBounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, bucket %d ends at %d", i, lo, i-1, prevHi)
		}
	}
}

func TestNearestRank(t *testing.T) {
	tests := []struct {
		name string
		q    float64
		n    uint64
		want uint64
	}{
		{"median of 1", 0.5, 1, 1},
		{"median of 4", 0.5, 4, 2},
		{"median of 5", 0.5, 5, 3},
		{"p99 of 100", 0.99, 100, 99},
		{"p99 of 1000", 0.99, 1000, 990},
		{"p99 of 101", 0.99, 101, 100},
		{"max", 1, 7, 7},
		{"tiny q", 0.0001, 10, 1},
		{"zero q", 0, 10, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nearestRank(tt.q, tt.n); got != tt.want {
				t.Fatalf("nearestRank(%v, %d) = %d, want %d", tt.q, tt.n, got, tt.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name   string
		values []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"unsorted median", ms(5, 1, 4, 2, 3), 0.5, 3 * time.Millisecond},
		{"p90 of 10", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 0.9, 9 * time.Millisecond},
		{"p99 of 10 is the max", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 0.99, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.values, tt.q); got != tt.want {
				t.Fatalf("percentile = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestHistogramQuantiles checks the histogram against exact nearest-rank
// percentiles of the same values: never below, less than 1/64 above.
func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	dists := map[string]func() time.Duration{
		"uniform ms":    func() time.Duration { return time.Duration(rng.Int64N(int64(50 * time.Millisecond))) },
		"exponential":   func() time.Duration { return time.Duration(rng.ExpFloat64() * float64(2*time.Millisecond)) },
		"small ns":      func() time.Duration { return time.Duration(rng.IntN(300)) },
		"heavy tail":    func() time.Duration { return time.Duration(float64(time.Millisecond) / (rng.Float64() + 1e-4)) },
		"one value":     func() time.Duration { return 1234567 },
		"with negative": func() time.Duration { return time.Duration(rng.Int64N(2000) - 1000) },
	}
	for name, next := range dists {
		t.Run(name, func(t *testing.T) {
			var h Histogram
			values := make([]time.Duration, 20000)
			for i := range values {
				values[i] = next()
				h.Record(values[i])
				values[i] = max(values[i], 0)
			}
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				exact := percentile(values, q)
				got := h.Quantile(q)
				if got < exact || float64(got-exact) > float64(exact)/64+1 {
					t.Errorf("q%v = %v, exact %v", q, got, exact)
				}
			}
			if h.Max() != values[len(values)-1] || h.Min() != values[0] {
				t.Errorf("min/max = %v/%v, want %v/%v", h.Min(), h.Max(), values[0], values[len(values)-1])
			}
			if h.Count() != uint64(len(values)) {
				t.Errorf("count = %d, want %d", h.Count(), len(values))
			}
		})
	}
}

func TestHistogramEmptyAndSummary(t *testing.T) {
	var h Histogram
	if h.Quantile(0.99) != 0 || h.Mean() != 0 || h.Min() != 0 || h.Max() != 0 {
		t.Fatal("an empty histogram reports non-zero values")
	}
	for _, d := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond} {
		h.Record(d)
	}
	s := h.Summary()
	if s.Count != 4 || s.Mean != 2.5 || s.Min != 1 || s.Max != 4 {
		t.Fatalf("summary %+v", s)
	}
	if s.P50 < 2 || s.P50 > 2.04 {
		t.Fatalf("p50 %v ms, want 2 ms within 1/64", s.P50)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 1000 {
				h.Record(time.Duration(g*1000 + i))
			}
		}()
	}
	for range 4 {
		<-done
	}
	if h.Count() != 4000 || h.Max() != 3999 || h.Min() != 0 {
		t.Fatalf("count %d max %v min %v", h.Count(), h.Max(), h.Min())
	}
}
