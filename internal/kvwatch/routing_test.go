package kvwatch_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamfleet/streamfleet/internal/contract"
	"github.com/streamfleet/streamfleet/internal/kvwatch"
)

// entry is a KV entry as a watch delivers it.
type entry struct {
	bucket, key string
	value       []byte
	created     time.Time
	op          jetstream.KeyValueOp
}

func (e entry) Bucket() string                  { return e.bucket }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return e.value }
func (e entry) Revision() uint64                { return 1 }
func (e entry) Created() time.Time              { return e.created }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }

func put(bucket, key string, v any, created time.Time) entry {
	b, _ := json.Marshal(v)
	if s, ok := v.(string); ok {
		b = []byte(s)
	}
	return entry{bucket: bucket, key: key, value: b, created: created, op: jetstream.KeyValuePut}
}

func del(bucket, key string) entry {
	return entry{bucket: bucket, key: key, op: jetstream.KeyValueDelete}
}

// calls records what ApplyRouting did to a Routing.
type calls []string

func (c *calls) SetNode(rec contract.NodeRecord) { *c = append(*c, "node "+rec.ID) }
func (c *calls) RemoveNode(id string)            { *c = append(*c, "-node "+id) }
func (c *calls) SetHeartbeat(hb contract.Heartbeat, at time.Time) {
	*c = append(*c, fmt.Sprintf("hb %s %s", hb.Node, at.Format(time.RFC3339)))
}
func (c *calls) RemoveHeartbeat(id string)       { *c = append(*c, "-hb "+id) }
func (c *calls) SetRoute(rt contract.Route)      { *c = append(*c, "route "+rt.Stream+" "+rt.Node) }
func (c *calls) RemoveRoute(stream, node string) { *c = append(*c, "-route "+stream+" "+node) }

// TestApplyRouting: puts and deletes of the three buckets reach the copy; a heartbeat written in
// the future counts as written now; a bad value, an unknown version and a bad route key are
// errors and change nothing; a record under another node's key changes nothing, without an error;
// probes and other buckets are not ApplyRouting's.
func TestApplyRouting(t *testing.T) {
	past := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	v := contract.Version
	cases := []struct {
		e          entry
		ours, fail bool
		want       string // the call made; empty: none
	}{
		{put(contract.BucketNodes, "n1", contract.NodeRecord{V: v, ID: "n1"}, past), true, false, "node n1"},
		{put(contract.BucketNodes, "n1", contract.NodeRecord{V: v, ID: "n2"}, past), true, false, ""},
		{put(contract.BucketNodes, "n1", contract.NodeRecord{V: v + 1, ID: "n1"}, past), true, true, ""},
		{put(contract.BucketNodes, "n1", "{not json", past), true, true, ""},
		{del(contract.BucketNodes, "n1"), true, false, "-node n1"},
		{put(contract.BucketHeartbeats, "n1", contract.Heartbeat{V: v, Node: "n1"}, past), true, false, "hb n1 " + past.Format(time.RFC3339)},
		{put(contract.BucketHeartbeats, "n1", contract.Heartbeat{V: v, Node: "n1"}, time.Now().Add(time.Hour)), true, false, "hb n1 now"},
		{put(contract.BucketHeartbeats, "n1", contract.Heartbeat{V: v, Node: "n2"}, past), true, false, ""},
		{del(contract.BucketHeartbeats, "n1"), true, false, "-hb n1"},
		{put(contract.BucketHeartbeats, contract.ProbeKey("m1"), "123", past), false, false, ""},
		{put(contract.BucketRoutes, contract.RouteKey("live/a", "n1"), contract.Route{V: v, Stream: "live/a", Node: "n1"}, past), true, false, "route live/a n1"},
		{put(contract.BucketRoutes, contract.RouteKey("live/a", "n1"), contract.Route{V: v, Stream: "live/b", Node: "n1"}, past), true, false, ""},
		{put(contract.BucketRoutes, "no-route-key", contract.Route{V: v}, past), true, true, ""},
		{del(contract.BucketRoutes, contract.RouteKey("live/a", "n1")), true, false, "-route live/a n1"},
		{put(contract.BucketConfig, "x", "{}", past), false, false, ""},
	}
	for i, c := range cases {
		var got calls
		ours, err := kvwatch.ApplyRouting(&got, c.e.bucket, c.e)
		if ours != c.ours || (err != nil) != c.fail {
			t.Fatalf("case %d (%s %s): ours %v, err %v; want ours %v, an error %v", i, c.e.bucket, c.e.key, ours, err, c.ours, c.fail)
		}
		if c.want == "hb n1 now" && len(got) == 1 {
			var at time.Time
			at, _ = time.Parse(time.RFC3339, got[0][len("hb n1 "):])
			if d := time.Since(at); d < -time.Second || d > 5*time.Second {
				t.Fatalf("case %d: a heartbeat from the future stored at %v, want now", i, at)
			}
			continue
		}
		if want := []string{c.want}; (c.want == "" && len(got) != 0) || (c.want != "" && !slices.Equal(got, want)) {
			t.Fatalf("case %d (%s %s): calls %q, want %q", i, c.e.bucket, c.e.key, got, c.want)
		}
	}
}
