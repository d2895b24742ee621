package kvwatch

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamfleet/streamfleet/internal/contract"
)

// Routing is a copy of the routing table's buckets (node records, heartbeats, routes) that
// ApplyRouting keeps: the stream manager's state and a node's upstream table.
type Routing interface {
	SetNode(rec contract.NodeRecord)
	RemoveNode(id string)
	// SetHeartbeat stores a heartbeat written at at (never later than now).
	SetHeartbeat(hb contract.Heartbeat, at time.Time)
	RemoveHeartbeat(id string)
	SetRoute(rt contract.Route)
	RemoveRoute(stream, node string)
}

// ApplyRouting feeds one entry of contract.BucketNodes, BucketHeartbeats or BucketRoutes into r
// and reports true; entries of other buckets and the managers' probes in the heartbeats bucket
// are not its own (false). An entry it ignores for what it holds (undecodable, of an unknown
// version, a route key that does not parse) is an error; a record whose node or stream does not
// match its key is ignored without one.
func ApplyRouting(r Routing, bucket string, e jetstream.KeyValueEntry) (bool, error) {
	key, put := e.Key(), e.Operation() == jetstream.KeyValuePut
	switch bucket {
	case contract.BucketNodes:
		if !put {
			r.RemoveNode(key)
			return true, nil
		}
		var rec contract.NodeRecord
		if err := Decode(e, &rec, &rec.V); err != nil {
			return true, err
		}
		if rec.ID == key {
			r.SetNode(rec)
		}
	case contract.BucketHeartbeats:
		if strings.HasPrefix(key, contract.ProbePrefix) {
			return false, nil
		}
		if !put {
			r.RemoveHeartbeat(key)
			return true, nil
		}
		var hb contract.Heartbeat
		if err := Decode(e, &hb, &hb.V); err != nil {
			return true, err
		}
		if hb.Node == key {
			at := e.Created()
			if now := time.Now(); at.After(now) {
				at = now
			}
			r.SetHeartbeat(hb, at)
		}
	case contract.BucketRoutes:
		stream, node, err := contract.ParseRouteKey(key)
		if err != nil {
			return true, err
		}
		if !put {
			r.RemoveRoute(stream, node)
			return true, nil
		}
		var rt contract.Route
		if err := Decode(e, &rt, &rt.V); err != nil {
			return true, err
		}
		if rt.Stream == stream && rt.Node == node {
			r.SetRoute(rt)
		}
	default:
		return false, nil
	}
	return true, nil
}

// Decode unmarshals e's value into v, whose version field is version: an error if it does not
// decode or is of another version than contract.Version.
func Decode(e jetstream.KeyValueEntry, v any, version *int) error {
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return err
	}
	if *version != contract.Version {
		return fmt.Errorf("version %d", *version)
	}
	return nil
}
