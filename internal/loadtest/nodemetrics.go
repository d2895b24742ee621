package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// FanoutMetric is the node's histogram of its own fan-out delay, in seconds: from a packet's
// arrival in the node's stream hub to the moment the datagram carrying it to a viewer was handed
// to the kernel (sendmmsg returned), one observation per datagram.
const FanoutMetric = "streamfleet_webrtc_fanout_delay_seconds"

const (
	// scrapeTimeout bounds one scrape of the node's metrics.
	scrapeTimeout = 5 * time.Second
	// maxMetricsBody bounds the metrics page read.
	maxMetricsBody = 16 << 20
)

// FanoutDelay is the node's fan-out delay inside the measurement window: the difference of its
// FanoutMetric histogram between the start and the end of the window, summed over label sets.
// Quantiles are interpolated linearly inside their bucket, as Prometheus' histogram_quantile
// does, so they are only as fine as the node's buckets.
type FanoutDelay struct {
	// URL is the node's metrics page.
	URL string `json:"url"`
	// Count is the number of datagrams observed inside the window.
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P95Ms  float64 `json:"p95_ms"`
	P99Ms  float64 `json:"p99_ms"`
	// Above counts datagrams slower than the highest finite bucket bound, AboveMs; a quantile
	// that falls among them is reported as AboveMs.
	Above   uint64  `json:"above,omitempty"`
	AboveMs float64 `json:"above_ms,omitempty"`
	// Error is set when a scrape failed or the two scrapes could not be compared; the figures
	// are then zero.
	Error string `json:"error,omitempty"`
}

// cumHistogram is one scrape of a Prometheus histogram, summed over its label sets: cumulative
// counts per upper bound, bounds ascending and the last one +Inf. The zero value is a histogram
// the node has not exposed (yet): a vector histogram has no series before its first observation.
type cumHistogram struct {
	bounds []float64
	counts []uint64
	sum    float64 // seconds
}

func (h cumHistogram) present() bool { return len(h.bounds) > 0 }

// fanoutSample is one scrape of the node's metrics.
type fanoutSample struct {
	hist cumHistogram
	err  error
}

// scrapeFanout fetches url and returns its FanoutMetric histogram.
func scrapeFanout(ctx context.Context, client *http.Client, url string) (cumHistogram, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return cumHistogram{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		return cumHistogram{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return cumHistogram{}, fmt.Errorf("scrape %s: %w %s", url, ErrUnexpectedStatus, resp.Status)
	}
	var parser expfmt.TextParser
	families, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, maxMetricsBody))
	if err != nil {
		return cumHistogram{}, fmt.Errorf("scrape %s: not the Prometheus text format: %w", url, err)
	}
	mf, ok := families[FanoutMetric]
	if !ok {
		return cumHistogram{}, nil
	}
	h, err := sumHistogram(mf)
	if err != nil {
		return cumHistogram{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	return h, nil
}

// sumHistogram adds up the series of a histogram family. Every series must have the same buckets.
func sumHistogram(mf *dto.MetricFamily) (cumHistogram, error) {
	if mf.GetType() != dto.MetricType_HISTOGRAM {
		return cumHistogram{}, fmt.Errorf("%s is a %s, not a histogram", mf.GetName(), mf.GetType())
	}
	var out cumHistogram
	for i, m := range mf.GetMetric() {
		h := m.GetHistogram()
		if h == nil {
			return cumHistogram{}, fmt.Errorf("%s: a series without a histogram", mf.GetName())
		}
		var bounds []float64
		var counts []uint64
		for _, b := range h.GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
			counts = append(counts, b.GetCumulativeCount())
		}
		// The text format always carries le="+Inf"; it is the series' count where it does not.
		if len(bounds) == 0 || !math.IsInf(bounds[len(bounds)-1], +1) {
			bounds = append(bounds, math.Inf(+1))
			counts = append(counts, h.GetSampleCount())
		}
		if !slices.IsSorted(bounds) {
			return cumHistogram{}, fmt.Errorf("%s: buckets not in ascending order", mf.GetName())
		}
		if i == 0 {
			out = cumHistogram{bounds: bounds, counts: counts}
		} else if !slices.Equal(bounds, out.bounds) {
			return cumHistogram{}, fmt.Errorf("%s: series with different buckets", mf.GetName())
		} else {
			for j, c := range counts {
				out.counts[j] += c
			}
		}
		out.sum += h.GetSampleSum()
	}
	return out, nil
}

// errFanoutCompare means the two scrapes of the window cannot be subtracted.
var errFanoutCompare = errors.New("node metrics")

// fanoutDelta returns what end observed beyond start. A start without the histogram counts as
// empty (no datagram sent yet); an end without it is an error.
func fanoutDelta(start, end cumHistogram) (cumHistogram, error) {
	if !end.present() {
		return cumHistogram{}, fmt.Errorf("%w: no %s histogram at the end of the window", errFanoutCompare, FanoutMetric)
	}
	if !start.present() {
		start = cumHistogram{bounds: end.bounds, counts: make([]uint64, len(end.counts))}
	}
	if !slices.Equal(start.bounds, end.bounds) {
		return cumHistogram{}, fmt.Errorf("%w: %s buckets changed inside the window", errFanoutCompare, FanoutMetric)
	}
	d := cumHistogram{bounds: end.bounds, counts: make([]uint64, len(end.counts)), sum: end.sum - start.sum}
	for i := range end.counts {
		if end.counts[i] < start.counts[i] {
			return cumHistogram{}, fmt.Errorf("%w: %s went down inside the window (node restarted?)", errFanoutCompare, FanoutMetric)
		}
		d.counts[i] = end.counts[i] - start.counts[i]
	}
	return d, nil
}

// quantile returns the q-quantile (0 <= q <= 1) of h in seconds the way Prometheus'
// histogram_quantile does: find the bucket holding rank q·count and interpolate linearly between
// its lower and upper bound (the first bucket starts at 0). A rank in the +Inf bucket returns the
// highest finite bound. NaN for an empty histogram or one without a finite bucket.
func (h cumHistogram) quantile(q float64) float64 {
	n := len(h.bounds)
	if n < 2 || h.counts[n-1] == 0 {
		return math.NaN()
	}
	// Cumulative counts never go down; a scrape that says otherwise is read as flat.
	counts := slices.Clone(h.counts)
	for i := 1; i < n; i++ {
		counts[i] = max(counts[i], counts[i-1])
	}
	rank := q * float64(counts[n-1])
	// The first bucket that reaches rank (and holds something, for q = 0).
	b := sort.Search(n, func(i int) bool { return counts[i] > 0 && float64(counts[i]) >= rank })
	if b >= n-1 {
		return h.bounds[n-2]
	}
	if b == 0 && h.bounds[0] <= 0 {
		return h.bounds[0]
	}
	lower, below := 0.0, 0.0
	if b > 0 {
		lower, below = h.bounds[b-1], float64(counts[b-1])
	}
	inBucket := float64(counts[b]) - below
	return lower + (h.bounds[b]-lower)*(rank-below)/inBucket
}

// fanoutDelay builds the report's figures from the two scrapes of the window.
func fanoutDelay(url string, first, last fanoutSample) *FanoutDelay {
	f := &FanoutDelay{URL: url}
	for _, s := range []fanoutSample{first, last} {
		if s.err != nil {
			f.Error = s.err.Error()
			return f
		}
	}
	d, err := fanoutDelta(first.hist, last.hist)
	if err != nil {
		f.Error = err.Error()
		return f
	}
	n := len(d.bounds)
	f.Count = d.counts[n-1]
	if f.Count == 0 {
		return f
	}
	toMs := func(s float64) float64 {
		if math.IsNaN(s) {
			return 0
		}
		return s * 1e3
	}
	f.MeanMs = d.sum / float64(f.Count) * 1e3
	f.P50Ms, f.P95Ms, f.P99Ms = toMs(d.quantile(0.50)), toMs(d.quantile(0.95)), toMs(d.quantile(0.99))
	if n >= 2 {
		f.Above = d.counts[n-1] - d.counts[n-2]
		if f.Above > 0 {
			f.AboveMs = d.bounds[n-2] * 1e3
		}
	}
	return f
}
