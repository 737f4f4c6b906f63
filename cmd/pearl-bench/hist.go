package main

import (
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
	"time"
)

// subBits sets the histogram's precision: values below 2^subBits ns are
// exact; above, each power of two is split into 2^(subBits-1) buckets, so
// a bucket's width is at most 1/64 of its lower bound.
const subBits = 7

// numBuckets covers every non-negative int64.
const numBuckets = (64-subBits+1)<<(subBits-1) + 1<<(subBits-1)

// Histogram records durations with a relative error below 1/64 in constant
// memory (about 30 KiB), so that millions of deliveries can be recorded
// without keeping them. Record may be called concurrently; the other
// methods must not race with Record.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64 // ns; wraps after 584 years of latency
	max    atomic.Int64
	min    atomic.Int64 // valid when n > 0; stored as value+1 so 0 is unset
}

// bucketOf returns the bucket of v, which must be non-negative.
func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - subBits
	return e<<(subBits-1) + int(v>>e)
}

// bucketBounds returns the smallest and largest value of bucket i.
func bucketBounds(i int) (lo, hi uint64) {
	if i < 1<<subBits {
		return uint64(i), uint64(i)
	}
	e := i>>(subBits-1) - 1
	m := uint64(i&(1<<(subBits-1)-1) + 1<<(subBits-1))
	lo = m << e
	return lo, lo + 1<<e - 1
}

// Record adds one value; negative values count as 0.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(uint64(v))].Add(1)
	h.n.Add(1)
	h.sum.Add(uint64(v))
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := h.min.Load()
		if (m != 0 && v+1 >= m) || h.min.CompareAndSwap(m, v+1) {
			break
		}
	}
}

// Count returns how many values were recorded.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max returns the largest value recorded, 0 when none was.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Min returns the smallest value recorded, 0 when none was.
func (h *Histogram) Min() time.Duration {
	if m := h.min.Load(); m > 0 {
		return time.Duration(m - 1)
	}
	return 0
}

// Mean returns the average, 0 when nothing was recorded.
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Quantile returns the nearest-rank q-quantile (0 < q <= 1): the smallest
// recorded value v such that at least q of the values are <= v, as the
// upper bound of its bucket, never above Max. So it is never below the
// exact value and above it by less than 1/64 of it. It is 0 when nothing
// was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := nearestRank(q, n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			_, hi := bucketBounds(i)
			return min(time.Duration(hi), h.Max())
		}
	}
	return h.Max()
}

// nearestRank returns the 1-based rank of the q-quantile of n values:
// ceil(q*n), at least 1 and at most n.
func nearestRank(q float64, n uint64) uint64 {
	r := uint64(math.Ceil(q * float64(n)))
	return min(max(r, 1), n)
}

// percentile returns the exact nearest-rank q-quantile of values, which it
// sorts; 0 when there are none.
func percentile(values []time.Duration, q float64) time.Duration {
	if len(values) == 0 {
		return 0
	}
	slices.Sort(values)
	return values[nearestRank(q, uint64(len(values)))-1]
}

// Latency is the JSON summary of a histogram, in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary returns the histogram's percentiles.
func (h *Histogram) Summary() Latency {
	return Latency{
		Count: h.Count(),
		Min:   ms(h.Min()),
		Mean:  ms(h.Mean()),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
	}
}

// ms converts d to milliseconds rounded to microseconds.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
