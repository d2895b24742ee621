package loadtest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
)

// stateWatch follows a PeerConnection's connection state: changed gets a (coalesced) signal on
// every change, so a waiter can read the current state without missing one.
type stateWatch struct {
	changed chan struct{}
}

// watchState installs the connection state handler of pc. onChange, if not nil, is called with
// every new state from pion's callback goroutine; it must not block.
func watchState(pc *webrtc.PeerConnection, onChange func(webrtc.PeerConnectionState)) *stateWatch {
	w := &stateWatch{changed: make(chan struct{}, 1)}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if onChange != nil {
			onChange(s)
		}
		select {
		case w.changed <- struct{}{}:
		default:
		}
	})
	return w
}

// negotiation is the outcome of a successful connect.
type negotiation struct {
	location  string    // session URL for DELETE, absolute; empty if the server sent none
	postedAt  time.Time // when the offer was POSTed (after ICE gathering)
	connected time.Time // when ICE and DTLS completed
}

// connect creates an offer, waits for ICE gathering to finish (WHIP/WHEP without trickle), POSTs
// it to endpoint, applies the answer and waits until pc is connected. ctx bounds all of it; a
// deadline turns into ErrConnectTimeout. When the POST succeeded, the returned negotiation holds
// the session location even if a later step failed, so the caller can DELETE it. onPost, if not
// nil, is called with the time of the POST before it is sent.
func connect(ctx context.Context, pc *webrtc.PeerConnection, w *stateWatch, sig *signaler,
	endpoint string, onPost func(time.Time),
) (negotiation, error) {
	var n negotiation
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return n, fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return n, fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return n, connectErr(ctx, "gather ICE candidates")
	}

	n.postedAt = time.Now()
	if onPost != nil {
		onPost(n.postedAt)
	}
	answer, location, err := sig.exchange(ctx, endpoint, pc.LocalDescription().SDP)
	if err != nil {
		if ctx.Err() != nil {
			return n, connectErr(ctx, "POST offer")
		}
		return n, err
	}
	n.location = location
	desc := webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}
	if err := pc.SetRemoteDescription(desc); err != nil {
		return n, fmt.Errorf("%w: %w", ErrInvalidAnswer, err)
	}

	for {
		switch s := pc.ConnectionState(); s {
		case webrtc.PeerConnectionStateConnected:
			n.connected = time.Now()
			return n, nil
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			return n, fmt.Errorf("%w: state %s", ErrConnectionFailed, s)
		}
		select {
		case <-w.changed:
		case <-ctx.Done():
			return n, connectErr(ctx, "connect ICE and DTLS")
		}
	}
}

// connectErr describes why ctx ended during step.
func connectErr(ctx context.Context, step string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s", ErrConnectTimeout, step)
	}
	return fmt.Errorf("%s: %w", step, ctx.Err())
}
