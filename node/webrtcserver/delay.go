package webrtcserver

import (
	"math/bits"
	"sync/atomic"
)

// DelayHistogram counts, for every datagram sent to a viewer in a batch, the time from its packet's
// arrival in the stream hub to the return of the sendmmsg that carried it: the delay the node's
// fan-out adds. Buckets are DelayBucketBase doubling, DelayBuckets of them, then +Inf; observing
// is two atomic adds.
type DelayHistogram struct {
	counts [DelayBuckets + 1]atomic.Uint64
	sum    atomic.Uint64 // nanoseconds
}

const (
	// DelayBucketBase is the upper bound of the first bucket, in nanoseconds (50 µs).
	DelayBucketBase = 50_000
	// DelayBuckets is the number of finite buckets: 50 µs … 102.4 ms.
	DelayBuckets = 12
)

func (h *DelayHistogram) observe(nanos int64) {
	if nanos < 0 {
		nanos = 0
	}
	i := 0
	if nanos > 0 {
		i = bits.Len64(uint64(nanos-1) / DelayBucketBase)
	}
	if i > DelayBuckets {
		i = DelayBuckets
	}
	h.counts[i].Add(1)
	h.sum.Add(uint64(nanos))
}

// Snapshot returns the cumulative counts of the finite buckets (upper bounds in seconds), the
// total count and the sum in seconds, as Prometheus histograms report them.
func (h *DelayHistogram) Snapshot() (bounds []float64, cumulative []uint64, count uint64, sum float64) {
	bounds = make([]float64, DelayBuckets)
	cumulative = make([]uint64, DelayBuckets)
	for i := range DelayBuckets {
		count += h.counts[i].Load()
		bounds[i] = float64(int64(DelayBucketBase)<<i) / 1e9
		cumulative[i] = count
	}
	count += h.counts[DelayBuckets].Load()
	return bounds, cumulative, count, float64(h.sum.Load()) / 1e9
}
