package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/node"
)

// TestPublisherReturnsWithinGrace: a publisher that vanishes and comes back within the grace
// period finds its viewers still connected, and they receive the new publisher's packets with
// continuous sequence numbers. When it does not come back, viewers are closed.
func TestPublisherReturnsWithinGrace(t *testing.T) {
	n := startNode(t, func(c *node.Config) {
		c.Grace = 2 * time.Second
		c.WebRTC.DisconnectedTimeout = 500 * time.Millisecond
		c.WebRTC.FailedTimeout = 500 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	url := n.HTTPURL() + "/whip/live/grace"
	send := func(p *rtctest.Publisher, from, to uint32) {
		for i := from; i < to; i++ {
			_ = p.Tracks[0].WriteRTP(&rtp.Packet{
				Header:  rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: i * 3000},
				Payload: payload(webrtc.MimeTypeVP8, i%10 == 0, i),
			})
			time.Sleep(5 * time.Millisecond)
		}
	}
	first, err := rtctest.Publish(ctx, api, url, "", rtctest.VP8)
	if err != nil {
		t.Fatal(err)
	}
	if err := rtctest.WaitConnected(ctx, first.PC); err != nil {
		t.Fatal(err)
	}
	v, err := rtctest.View(ctx, api, n.HTTPURL()+"/whep/live/grace", "")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := rtctest.WaitConnected(ctx, v.PC); err != nil {
		t.Fatal(err)
	}
	waitPackets := func(min int) {
		t.Helper()
		for len(v.Payloads("video")) < min {
			if ctx.Err() != nil {
				t.Fatalf("viewer has %d packets, want %d", len(v.Payloads("video")), min)
			}
			send(first, 0, 0)
			time.Sleep(10 * time.Millisecond)
		}
	}
	go send(first, 0, 100)
	waitPackets(20)

	// The publisher vanishes: no DELETE, the connection just goes away.
	first.PC.Close()
	time.Sleep(1200 * time.Millisecond) // past the ICE timeouts, inside the grace period
	if v.PC.ConnectionState() != webrtc.PeerConnectionStateConnected {
		t.Fatalf("viewer dropped during the grace period: %s", v.PC.ConnectionState())
	}
	before := len(v.Payloads("video"))

	second, err := rtctest.Publish(ctx, api, url, "", rtctest.VP8)
	if err != nil {
		t.Fatalf("republish within grace: %v", err)
	}
	if err := rtctest.WaitConnected(ctx, second.PC); err != nil {
		t.Fatal(err)
	}
	send(second, 1000, 1100)
	for len(v.Payloads("video")) < before+50 {
		if ctx.Err() != nil {
			t.Fatalf("no packets from the returning publisher (%d)", len(v.Payloads("video"))-before)
		}
		send(second, 1100, 1110)
	}
	checkContinuous(t, v.Headers("video"))

	// Now the publisher leaves for good (vanishes again): after the grace the viewer is closed.
	second.PC.Close()
	deadline := time.Now().Add(10 * time.Second)
	for v.PC.ConnectionState() == webrtc.PeerConnectionStateConnected {
		if time.Now().After(deadline) {
			t.Fatal("viewer still connected after the grace period")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(n.Hub().Streams()) != 0 {
		t.Fatal("stream still present after the grace period")
	}
}
