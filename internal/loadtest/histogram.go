package loadtest

import (
	"math"
	"math/bits"
	"slices"
	"time"
)

// histogram counts durations in fixed log-linear buckets: values below histSub nanoseconds get a
// bucket each, and every power of two above is split into histSub equal buckets, so a bucket is
// at most 1/histSub (6.25 %) wide relative to its values. Recording is a few integer operations
// and no allocation; a histogram is owned by one goroutine and merged after that goroutine ends.
type histogram struct {
	counts [histBuckets]uint64
	count  uint64
	sum    int64
	min    int64
	max    int64
}

const (
	histSubBits = 4
	histSub     = 1 << histSubBits
	// histMaxBits bounds recorded values to 2^histMaxBits-1 ns (about 18 minutes).
	histMaxBits = 40
	histBuckets = (histMaxBits - histSubBits + 1) * histSub
	histMax     = 1<<histMaxBits - 1
)

// histIndex returns the bucket of v (0 <= v <= histMax).
func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - 1
	m := (v >> (e - histSubBits)) & (histSub - 1)
	return (e-histSubBits+1)*histSub + int(m)
}

// histLower returns the smallest value of bucket i.
func histLower(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	e := i/histSub + histSubBits - 1
	m := int64(i % histSub)
	return (histSub + m) << (e - histSubBits)
}

// record adds one duration; negative durations count as zero.
func (h *histogram) record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if v > histMax {
		v = histMax
	}
	h.counts[histIndex(uint64(v))]++
	if h.count == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.count++
	h.sum += v
}

// merge adds the samples of o to h.
func (h *histogram) merge(o *histogram) {
	if o.count == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.count += o.count
	h.sum += o.sum
}

// quantile returns the value below which a fraction q of the samples fall: the middle of the
// bucket holding that rank, clamped to the observed minimum and maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(h.min)
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	rank = max(1, min(rank, h.count))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen < rank {
			continue
		}
		lo := histLower(i)
		hi := lo
		if i+1 < histBuckets {
			hi = histLower(i+1) - 1
		}
		return time.Duration(min(max((lo+hi)/2, h.min), h.max))
	}
	return time.Duration(h.max)
}

// percentiles summarises h.
func (h *histogram) percentiles() Percentiles {
	if h.count == 0 {
		return Percentiles{}
	}
	return Percentiles{
		Count:  h.count,
		MeanMs: float64(h.sum) / float64(h.count) / 1e6,
		P50Ms:  ms(h.quantile(0.50)),
		P95Ms:  ms(h.quantile(0.95)),
		P99Ms:  ms(h.quantile(0.99)),
		MaxMs:  ms(time.Duration(h.max)),
	}
}

// exactPercentiles summarises a small set of durations exactly (nearest rank).
func exactPercentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Percentiles{
		Count:  uint64(len(s)),
		MeanMs: ms(sum) / float64(len(s)),
		P50Ms:  ms(at(0.50)),
		P95Ms:  ms(at(0.95)),
		P99Ms:  ms(at(0.99)),
		MaxMs:  ms(s[len(s)-1]),
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
