package webrtcserver

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
)

// peer is what WHIP and WHEP sessions share: a peer connection known to the server by an id, which
// ends its session when the connection fails or closes.
type peer struct {
	s   *Server
	sid string
	log *slog.Logger
	pc  *webrtc.PeerConnection

	connected chan struct{} // closed once the connection is established
	connOnce  sync.Once
	added     atomic.Bool // registered with the server; before that, failures are the handler's
	once      sync.Once   // guards the session's close
}

func newPeer(s *Server, pc *webrtc.PeerConnection, proto, stream string) peer {
	sid := newSessionID()
	return peer{
		s: s, sid: sid, pc: pc, connected: make(chan struct{}),
		log: s.log.With("session", sid, "stream", stream, "proto", proto),
	}
}

func (p *peer) id() string { return p.sid }

func (p *peer) addCandidates(frag string) error { return addTrickleCandidates(p.pc, frag) }

// watchState marks the peer connected, and ends the session through closeFn when the connection
// fails or closes after the session was registered.
func (p *peer) watchState(closeFn func(stop bool)) {
	p.pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		switch state {
		case webrtc.PeerConnectionStateConnected:
			p.connOnce.Do(func() {
				close(p.connected)
				p.log.Debug("peer connected")
			})
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			if p.added.Load() {
				p.s.goSession(func() { closeFn(false) })
			}
		}
	})
}
