package streammanager

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/contract"
)

// benchState fills a manager with 100 nodes (90 edges in 3 regions, 10 origins) and 10,000
// streams, each on its origin and two edges.
func benchState(b *testing.B) (*Manager, *fleet) {
	m, f := newTestManager(b)
	f.s.now = time.Now
	regions := []string{"eu", "us", "ap"}
	for i := range 100 {
		role := "edge"
		if i >= 90 {
			role = "origin"
		}
		f.add(fmt.Sprintf("n%03d", i), role, regions[i%3], 1_000_000)
	}
	for s := range 10_000 {
		name := fmt.Sprintf("live/s%05d", s)
		f.s.SetRoute(contract.Route{V: 1, Stream: name, Node: fmt.Sprintf("n%03d", 90+s%10), Role: "origin", Ingest: true})
		f.s.SetRoute(contract.Route{V: 1, Stream: name, Node: fmt.Sprintf("n%03d", s%90), Role: "edge"})
		f.s.SetRoute(contract.Route{V: 1, Stream: name, Node: fmt.Sprintf("n%03d", (s+7)%90), Role: "edge"})
	}
	return m, f
}

// BenchmarkSubscribeLookup runs GET /api/v1/streams/{stream}/subscribe through the manager's
// real HTTP handler (routing, parsing, balancing, JSON answer) and reports lookups/s and p99.
func BenchmarkSubscribeLookup(b *testing.B) {
	m, f := benchState(b)
	h := m.Handler()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if i%5000 == 4999 { // every node heartbeats (the watch's work, timed with the rest)
			f.now = time.Now()
			for n := range 100 {
				f.beat(fmt.Sprintf("n%03d", n), 0)
			}
		}
		req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/api/v1/streams/live/s%05d/subscribe?region=eu&protocol=webrtc", i%10_000), nil)
		rec := httptest.NewRecorder()
		t0 := time.Now()
		h.ServeHTTP(rec, req)
		lat = append(lat, time.Since(t0))
		if rec.Code != 200 {
			b.Fatalf("lookup %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "lookups/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
