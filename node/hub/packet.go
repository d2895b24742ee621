// Package hub is the stream hub of a node: the fan-out from one publisher's RTP packets to every
// reader of a stream, whatever protocol either side speaks.
//
// A Stream has Tracks (video, audio); a Track has Layers (simulcast RIDs or transcoder variants),
// each one RTP stream. The publisher's ingest goroutine writes each packet once to its Layer; the
// Layer hands the same immutable *Packet to every Reader's bounded queue without waiting — a
// channel per plain reader, or for notified readers the Track's ring, which they read at their own
// positions. A Reader that falls behind loses packets until the next keyframe and the loss is
// counted. Keyframe requests from readers are coalesced per Layer before they reach the publisher.
package hub

import "github.com/pion/rtp"

// Packet is one RTP packet as received from the publisher. It is shared by every reader and must
// not be modified after Layer.WritePacket.
type Packet struct {
	// Header is the publisher's RTP header with header extensions removed: extension IDs are
	// negotiated per peer, so outputs add their own.
	Header rtp.Header
	// Payload is the RTP payload, unchanged.
	Payload []byte
	// Keyframe is true on the first packet of an independently decodable picture, and on every
	// audio packet.
	Keyframe bool
	// Layer is the layer the packet arrived on.
	Layer *Layer
	// ArrivalNanos is the monotonic-free wall clock (UnixNano) at ingest, for delay metrics.
	ArrivalNanos int64

	pos uint64 // position in the track's ring
}

// MarshalSize is the size of the packet on the wire without header extensions.
func (p *Packet) MarshalSize() int { return p.Header.MarshalSize() + len(p.Payload) }
