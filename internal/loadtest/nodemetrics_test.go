package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/goleak"
)

// fanoutBuckets are the node's buckets: 50 µs doubling up to 102.4 ms.
var fanoutBuckets = prometheus.ExponentialBuckets(50e-6, 2, 12)

// testHist builds a scrape from per-bucket (not cumulative) counts over fanoutBuckets and +Inf;
// missing trailing buckets are empty.
func testHist(sum float64, perBucket ...uint64) cumHistogram {
	h := cumHistogram{bounds: append(append([]float64{}, fanoutBuckets...), math.Inf(+1)), sum: sum}
	h.counts = make([]uint64, len(h.bounds))
	var c uint64
	for i := range h.counts {
		if i < len(perBucket) {
			c += perBucket[i]
		}
		h.counts[i] = c
	}
	return h
}

// inf puts n observations in the +Inf bucket only.
func inf(n uint64) []uint64 {
	b := make([]uint64, len(fanoutBuckets)+1)
	b[len(b)-1] = n
	return b
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }

func TestFanoutDelayFromTwoScrapes(t *testing.T) {
	for _, tc := range []struct {
		name        string
		first, last cumHistogram
		want        FanoutDelay
	}{
		{
			// (50,100] µs: 100, (100,200] µs: 100. p50 at rank 100 is the top of the first
			// occupied bucket; p95 at rank 190 is 90 % into the next.
			name:  "interpolation",
			first: cumHistogram{},
			last:  testHist(0.03, 0, 100, 100),
			want:  FanoutDelay{Count: 200, MeanMs: 0.15, P50Ms: 0.1, P95Ms: 0.19, P99Ms: 0.198},
		},
		{
			name:  "delta of two scrapes",
			first: testHist(1.5, 0, 50, 0, 7, 0, 0, 0, 0, 0, 0, 0, 3),
			last:  testHist(1.53, 0, 150, 100, 7, 0, 0, 0, 0, 0, 0, 0, 3),
			want:  FanoutDelay{Count: 200, MeanMs: 0.15, P50Ms: 0.1, P95Ms: 0.19, P99Ms: 0.198},
		},
		{
			// The first bucket starts at zero.
			name: "first bucket",
			last: testHist(0.0002, 10),
			want: FanoutDelay{Count: 10, MeanMs: 0.02, P50Ms: 0.025, P95Ms: 0.0475, P99Ms: 0.0495},
		},
		{
			// As histogram_quantile: a rank in +Inf reports the highest finite bound.
			name:  "all in +Inf",
			first: testHist(0.1, 1),
			last:  testHist(1.1, append([]uint64{1}, inf(5)[1:]...)...),
			want:  FanoutDelay{Count: 5, MeanMs: 200, P50Ms: 102.4, P95Ms: 102.4, P99Ms: 102.4, Above: 5, AboveMs: 102.4},
		},
		{
			name:  "empty delta",
			first: testHist(0.02, 0, 100, 100),
			last:  testHist(0.02, 0, 100, 100),
			want:  FanoutDelay{},
		},
		{
			name: "no series at either scrape",
			want: FanoutDelay{Error: "node metrics: no " + FanoutMetric + " histogram at the end of the window"},
		},
		{
			name:  "node restarted",
			first: testHist(0.02, 0, 100, 100),
			last:  testHist(0.001, 0, 10),
			want:  FanoutDelay{Error: "node metrics: " + FanoutMetric + " went down inside the window (node restarted?)"},
		},
		{
			name:  "buckets changed",
			first: cumHistogram{bounds: []float64{0.001, math.Inf(+1)}, counts: []uint64{1, 1}},
			last:  testHist(0.001, 0, 10),
			want:  FanoutDelay{Error: "node metrics: " + FanoutMetric + " buckets changed inside the window"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fanoutDelay("u", fanoutSample{hist: tc.first}, fanoutSample{hist: tc.last})
			tc.want.URL = "u"
			if got.Count != tc.want.Count || got.Error != tc.want.Error || got.Above != tc.want.Above ||
				!near(got.MeanMs, tc.want.MeanMs) || !near(got.P50Ms, tc.want.P50Ms) || !near(got.P95Ms, tc.want.P95Ms) ||
				!near(got.P99Ms, tc.want.P99Ms) || !near(got.AboveMs, tc.want.AboveMs) || got.URL != tc.want.URL {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}

	// A scrape error is reported, not subtracted.
	got := fanoutDelay("u", fanoutSample{err: fmt.Errorf("scrape u: refused")}, fanoutSample{hist: testHist(1, 1)})
	if got.Error != "scrape u: refused" || got.Count != 0 {
		t.Errorf("with a failed first scrape: %+v", *got)
	}
}

func TestHistogramQuantileEdges(t *testing.T) {
	if q := (cumHistogram{}).quantile(0.5); !math.IsNaN(q) {
		t.Errorf("quantile of nothing = %v, want NaN", q)
	}
	if q := testHist(0).quantile(0.5); !math.IsNaN(q) {
		t.Errorf("quantile of an empty histogram = %v, want NaN", q)
	}
	h := testHist(0, 0, 4)
	if q := h.quantile(0); q != 50e-6 {
		t.Errorf("quantile(0) = %v, want the lower bound of the first occupied bucket", q)
	}
	if q := h.quantile(1); q != 100e-6 {
		t.Errorf("quantile(1) = %v, want the upper bound of the last occupied bucket", q)
	}
	// Inconsistent cumulative counts are flattened, not read as negative buckets.
	h.counts[3] = 2
	if q := h.quantile(0.5); !near(q, 75e-6) {
		t.Errorf("quantile with a dip = %v", q)
	}
}

// metricsNode serves a registry like the node's: the fan-out histogram for two roles, and other
// metrics around it.
type metricsNode struct {
	edge, origin prometheus.Histogram
	srv          *httptest.Server
}

func newMetricsNode(t *testing.T, beforeScrape func(*metricsNode)) *metricsNode {
	t.Helper()
	reg := prometheus.NewRegistry()
	hist := func(role string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        FanoutMetric,
			Help:        "Time from a packet's arrival in the stream hub to sendmmsg returning, per datagram.",
			Buckets:     fanoutBuckets,
			ConstLabels: prometheus.Labels{"node": "n1", "role": role},
		})
	}
	m := &metricsNode{edge: hist("edge"), origin: hist("origin")}
	sessions := prometheus.NewGauge(prometheus.GaugeOpts{Name: "streamfleet_webrtc_sessions", Help: "Sessions."})
	sessions.Set(3)
	reg.MustRegister(m.edge, m.origin, sessions, prometheus.NewGoCollector())
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if beforeScrape != nil {
			beforeScrape(m)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func observeN(h prometheus.Histogram, n int, v time.Duration) {
	for range n {
		h.Observe(v.Seconds())
	}
}

func TestScrapeFanoutFromClientGolang(t *testing.T) {
	node := newMetricsNode(t, nil)
	ctx := context.Background()
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()

	// Before the window: slow datagrams that must not count.
	observeN(node.edge, 1000, 50*time.Millisecond)
	first, err := scrapeFanout(ctx, client, node.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if first.counts[len(first.counts)-1] != 1000 {
		t.Fatalf("first scrape counts %v, want 1000 in all", first.counts)
	}
	// Inside the window: 900 at 150 µs over both roles, 100 at 3 ms.
	observeN(node.edge, 600, 150*time.Microsecond)
	observeN(node.origin, 300, 150*time.Microsecond)
	observeN(node.edge, 100, 3*time.Millisecond)
	last, err := scrapeFanout(ctx, client, node.srv.URL)
	if err != nil {
		t.Fatal(err)
	}

	f := fanoutDelay(node.srv.URL, fanoutSample{hist: first}, fanoutSample{hist: last})
	t.Logf("%+v", *f)
	if f.Error != "" || f.Count != 1000 || f.Above != 0 {
		t.Fatalf("fan-out delay %+v, want 1000 datagrams", *f)
	}
	if f.P50Ms <= 0.1 || f.P50Ms > 0.2 {
		t.Errorf("p50 %.4f ms, want in the (0.1, 0.2] ms bucket", f.P50Ms)
	}
	for _, p := range []float64{f.P95Ms, f.P99Ms} {
		if p <= 1.6 || p > 3.2 {
			t.Errorf("p95/p99 %.4f ms, want in the (1.6, 3.2] ms bucket", p)
		}
	}
	// Rank 500 of 900 in (0.1, 0.2]; rank 990 is 90 of 100 into (1.6, 3.2].
	if !near(f.P50Ms, 0.1+0.1*500/900) || !near(f.P99Ms, 1.6+1.6*0.9) {
		t.Errorf("p50 %v p99 %v, want the interpolated 0.1556 and 3.04", f.P50Ms, f.P99Ms)
	}
	if want := (900*0.15 + 100*3.0) / 1000; math.Abs(f.MeanMs-want) > 1e-6 {
		t.Errorf("mean %v ms, want %v", f.MeanMs, want)
	}

	// A page without the histogram (a node with no viewer yet) is not an error by itself.
	empty := httptest.NewServer(promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{}))
	defer empty.Close()
	h, err := scrapeFanout(ctx, client, empty.URL)
	if err != nil || h.present() {
		t.Errorf("page without %s: %+v, %v", FanoutMetric, h, err)
	}
}

func TestScrapeFanoutErrors(t *testing.T) {
	serve := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()

	for _, tc := range []struct {
		name, url, want string
	}{
		{"500", serve(http.StatusInternalServerError, "boom\n"), "unexpected HTTP status 500 Internal Server Error"},
		{"garbage", serve(http.StatusOK, "<html><body>hello</body></html>\n"), "not the Prometheus text format"},
		{"half a page", serve(http.StatusOK, FanoutMetric+`_bucket{le="0.0001"} 12`+"\n"+FanoutMetric+`_bucket{le="+Inf"`), "not the Prometheus text format"},
		{"not a histogram", serve(http.StatusOK, "# TYPE "+FanoutMetric+" counter\n"+FanoutMetric+" 7\n"), "is a COUNTER, not a histogram"},
		{"refused", closed.URL, "connection refused"},
	} {
		_, err := scrapeFanout(context.Background(), client, tc.url)
		t.Logf("%s: %v", tc.name, err)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.url) {
			t.Errorf("%s: err = %v, want the URL and %q", tc.name, err, tc.want)
		}
	}
}

func TestRunReportsNodeFanout(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	whep := httptest.NewServer(http.NotFoundHandler())
	defer whep.Close()
	// Every scrape sees ten more datagrams, so the window holds exactly ten.
	node := newMetricsNode(t, func(m *metricsNode) { observeN(m.edge, 10, 150*time.Microsecond) })
	defer node.srv.Close() // before goleak looks
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "metrics broke", http.StatusInternalServerError)
	}))
	defer failing.Close()

	run := func(metrics string) (*Report, string, string) {
		t.Helper()
		cfg := DefaultConfig()
		cfg.Server = whep.URL
		cfg.NoPublish = true
		cfg.Subscribers = 1
		cfg.Warmup = 0
		cfg.Duration = 100 * time.Millisecond
		cfg.NodeMetrics = metrics
		rep, err := Run(context.Background(), cfg, testLogger(t))
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		var text strings.Builder
		if err := rep.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		return rep, text.String(), string(data)
	}

	rep, text, js := run(node.srv.URL + "/metrics")
	t.Logf("report:\n%s", text)
	f := rep.NodeFanoutDelay
	if f == nil || f.Error != "" || f.Count != 10 || f.P50Ms <= 0.1 || f.P50Ms > 0.2 {
		t.Fatalf("node fan-out delay %+v, want 10 datagrams in (0.1, 0.2] ms", f)
	}
	if !strings.Contains(text, "node fan-out       p50 0.15 ms") || !strings.Contains(text, "(10 datagrams; hub → kernel)") {
		t.Errorf("text report lacks the node fan-out line")
	}
	if !strings.Contains(js, `"node_fanout_delay":{"url":"`+node.srv.URL+`/metrics","count":10,`) {
		t.Errorf("JSON report lacks node_fanout_delay: %s", js)
	}

	rep, text, js = run(failing.URL + "/metrics")
	if f := rep.NodeFanoutDelay; f == nil || !strings.Contains(f.Error, "500") || f.Count != 0 {
		t.Errorf("node fan-out delay with a failing node %+v", f)
	}
	if !strings.Contains(text, "node fan-out       unavailable: scrape "+failing.URL+"/metrics: unexpected HTTP status 500") {
		t.Errorf("text report lacks the scrape error:\n%s", text)
	}
	if !strings.Contains(js, `"error":"scrape `) {
		t.Errorf("JSON report lacks the scrape error: %s", js)
	}

	rep, text, _ = run("")
	if rep.NodeFanoutDelay != nil || strings.Contains(text, "node fan-out") {
		t.Errorf("node fan-out reported without --node-metrics: %+v", rep.NodeFanoutDelay)
	}
}

func TestFanoutText(t *testing.T) {
	for _, tc := range []struct {
		f    FanoutDelay
		want string
	}{
		{FanoutDelay{Count: 123456, MeanMs: 0.3, P50Ms: 0.21, P95Ms: 0.8, P99Ms: 1.9},
			"p50 0.21 ms  p95 0.80 ms  p99 1.9 ms  mean 0.30 ms  (123456 datagrams; hub → kernel)"},
		{FanoutDelay{Count: 5, MeanMs: 150, P50Ms: 102.4, P95Ms: 102.4, P99Ms: 102.4, Above: 5, AboveMs: 102.4},
			"p50 102 ms  p95 102 ms  p99 102 ms  mean 150 ms  (5 datagrams, 5 above 102 ms; hub → kernel)"},
		{FanoutDelay{}, "no datagrams (hub → kernel)"},
		{FanoutDelay{Error: "scrape x: refused"}, "unavailable: scrape x: refused"},
	} {
		if got := fanout(tc.f); got != tc.want {
			t.Errorf("fanout(%+v)\n got %q\nwant %q", tc.f, got, tc.want)
		}
	}
}
