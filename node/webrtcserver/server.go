// Package webrtcserver is a node's WebRTC front end: WHIP ingest and WHEP playback (RFC 9725) on
// pion/webrtc, with every session on one UDP port. Ingest writes into the stream hub; playback
// reads from it.
package webrtcserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v4"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/node/auth"
	"github.com/streamfleet/streamfleet/node/hub"
)

// Server serves WHIP and WHEP sessions.
type Server struct {
	cfg  Config
	hub  *hub.Hub
	log  *slog.Logger
	auth *auth.Authorizer

	udpConn  net.PacketConn
	udpMux   ice.UDPMux
	batchMux *batchUDPMux  // udpMux with batched RTP sends for viewers
	pkt      *packetSender // the packet path (Config.PacketSend), or nil
	ingest   *webrtc.API   // for publishers: NACK generation, receiver reports, TWCC feedback
	// For viewers, an API each (viewerAPI): no interceptors (NACKs are answered from the hub,
	// sender reports sent by the fan-out), and the DTLS secrets captured for the node's own SRTP.
	egressSettings webrtc.SettingEngine
	egressMedia    *webrtc.MediaEngine
	fanout         *fanout
	// Shared by every peer connection (shared.go).
	loggers *sharedLoggers
	net     transport.Net
	certs   *certSource

	mu       sync.Mutex
	sessions map[string]session
	closed   bool
	wg       sync.WaitGroup // every session goroutine

	stats Stats
}

// Stats are the server's counters.
type Stats struct {
	WHIPSessions    atomic.Int64
	WHEPSessions    atomic.Int64
	PacketsOut      atomic.Uint64
	BytesOut        atomic.Uint64
	Retransmissions atomic.Uint64
	// RetransmissionsDropped counts NACKed packets not resent because the group's queue was full.
	RetransmissionsDropped atomic.Uint64
	SenderReports          atomic.Uint64
	// SendBatches and BatchedPackets count sendmmsg calls and the datagrams they carried;
	// SendErrors the datagrams the kernel refused; SendBufferWaits the times a batch found the
	// socket's send buffer full and waited for room (the network or the device is the limit).
	SendBatches     atomic.Uint64
	BatchedPackets  atomic.Uint64
	SendErrors      atomic.Uint64
	SendBufferWaits atomic.Uint64
	// GSOMessages counts messages that carried several datagrams to one viewer (UDP GSO);
	// GSODisabled the batches that found the kernel refusing it (on the UDP socket, or for the
	// packet path's messages) and went on without.
	GSOMessages atomic.Uint64
	GSODisabled atomic.Uint64
	// PacketRingDatagrams counts datagrams sent through the packet path's rings
	// (Config.PacketSend); PacketRingFull those that found a ring full and went by sendmmsg;
	// PacketRingErrors the kicks (and messages) the kernel refused; PacketRingWaits the times a
	// kick left frames in a ring (the device's queue holds the socket's whole send buffer) to be
	// handed over again.
	PacketRingDatagrams atomic.Uint64
	PacketRingFull      atomic.Uint64
	PacketRingErrors    atomic.Uint64
	PacketRingWaits     atomic.Uint64
	// PacketMessageDatagrams counts datagrams sent in messages through the packet path's sockets
	// without a ring, PacketGSOMessages those messages that carried a run for the kernel to cut;
	// PacketMessagesWaits the flushes whose messages found the socket's send buffer full and went
	// on by the UDP socket.
	PacketMessageDatagrams atomic.Uint64
	PacketGSOMessages      atomic.Uint64
	PacketMessagesWaits    atomic.Uint64
	// OwnSRTPViewers counts viewers whose RTP the node encrypted itself after the first packet
	// matched pion's; OwnSRTPFallbacks those left to pion because it did not.
	OwnSRTPViewers   atomic.Uint64
	OwnSRTPFallbacks atomic.Uint64
	// OwnSRTPVerifications counts the comparisons that matched: a viewer's first packet, and the
	// first after each change of its selected ICE pair.
	OwnSRTPVerifications atomic.Uint64
	// FanoutDelay is the hub → kernel delay of every batched datagram.
	FanoutDelay        DelayHistogram
	SessionsRejected   atomic.Uint64
	SessionsTimedOut   atomic.Uint64
	KeyframeRequestsIn atomic.Uint64
}

// session is a WHIP or WHEP session, addressed by its Location.
type session interface {
	id() string
	// addCandidates applies a trickle ICE fragment.
	addCandidates(frag string) error
	// close ends the session; stop is true when the client asked (DELETE).
	close(stop bool)
}

// listenICEUDP opens the one UDP socket of every session, its reads and writes raw (rawudp.go).
func listenICEUDP(addr string) (net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen ice udp %s: %w", addr, err)
	}
	conn, err := newRawUDPConn(pc.(*net.UDPConn))
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("listen ice udp %s: %w", addr, err)
	}
	return conn, nil
}

// New listens on the ICE UDP address and prepares the WebRTC APIs.
func New(cfg Config, h *hub.Hub, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webrtc config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := listenICEUDP(cfg.ICEUDPAddr)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, hub: h, log: log, auth: cfg.Auth, udpConn: conn, sessions: map[string]session{}}
	if s.auth == nil {
		s.auth = auth.Static(cfg.PublishToken, cfg.PlayToken)
	}
	s.loggers = newSharedLoggers(logging.LogLevelError)
	s.certs = newCertSource()
	if s.net, err = newFixedNet(); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if cfg.PacketSend {
		local, _ := conn.LocalAddr().(*net.UDPAddr)
		if local == nil {
			_ = conn.Close()
			return nil, errors.New("packet send: the ICE socket is not UDP")
		}
		if s.pkt, err = newPacketSender(local.AddrPort(), log); err != nil {
			_ = conn.Close()
			return nil, err
		}
	}
	s.batchMux = newBatchUDPMux(webrtc.NewICEUDPMux(s.loggers.NewLogger("ice"), conn))
	s.udpMux = s.batchMux
	s.fanout = newFanout(s)

	if err := s.prepareAPIs(); err != nil {
		_ = s.udpMux.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) prepareAPIs() error {
	se, m, err := s.apiSettings(true)
	if err != nil {
		return err
	}
	if s.ingest, err = s.newIngestAPI(se, m); err != nil {
		return err
	}
	if s.egressSettings, s.egressMedia, err = s.apiSettings(false); err != nil {
		return err
	}
	return s.egressSettings.SetAnsweringDTLSRole(webrtc.DTLSRoleServer) // see srtpkeys.go
}

// viewerAPI is a viewer's own API, whose DTLS handshake hands its secrets to the returned capture.
// An offer with a=setup:passive asks the node to be the DTLS client (pion would not follow it on
// its own): then nothing is captured and keys is nil.
func (s *Server) viewerAPI(o *offer) (api *webrtc.API, keys *keyCapture) {
	se := s.egressSettings
	if offeredSetup(o.parsed) == "passive" {
		_ = se.SetAnsweringDTLSRole(webrtc.DTLSRoleClient) // fails only for roles other than client and server
	} else {
		keys = &keyCapture{}
		se.SetDTLSKeyLogWriter(keys)
		se.SetDTLSServerHelloMessageHook(keys.serverHello)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(s.egressMedia), webrtc.WithInterceptorRegistry(&interceptor.Registry{}),
		webrtc.WithSettingEngine(se)), keys
}

// offeredSetup is the offer's DTLS setup attribute (RFC 8842): actpass, active or passive.
func offeredSetup(d *sdp.SessionDescription) string {
	if v, ok := d.Attribute("setup"); ok {
		return v
	}
	for _, m := range d.MediaDescriptions {
		if v, ok := m.Attribute("setup"); ok {
			return v
		}
	}
	return ""
}

// apiSettings are the settings and codecs of publishers' (ingest) or viewers' peer connections.
func (s *Server) apiSettings(ingest bool) (webrtc.SettingEngine, *webrtc.MediaEngine, error) {
	se := webrtc.SettingEngine{}
	se.SetICEUDPMux(s.udpMux)
	se.SetLite(false) // a full agent: its triggered checks let clients nominate at once (http.go)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	// No keepalive checks from the node on a connected pair: the client's own checks (every 2 s
	// from pion, 2.5 s from Chromium) and its RTCP keep the pair alive, as they did while the node
	// was ICE-lite; a check to every viewer every second cost 10–14 % more CPU at 200 viewers.
	se.SetICETimeouts(s.cfg.DisconnectedTimeout, s.cfg.FailedTimeout, 0)
	// AES-GCM costs less than half of AES-CM-HMAC per packet; browsers offer it.
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	if len(s.cfg.PublicIPs) > 0 {
		se.SetNAT1To1IPs(s.cfg.PublicIPs, webrtc.ICECandidateTypeHost)
	}
	se.LoggerFactory = s.loggers
	se.SetNet(s.net)

	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m, ingest); err != nil {
		return se, nil, err
	}
	return se, m, nil
}

// newIngestAPI is the publishers' API: NACK generation, receiver reports, TWCC feedback, and the
// simulcast header extensions.
func (s *Server) newIngestAPI(se webrtc.SettingEngine, m *webrtc.MediaEngine) (*webrtc.API, error) {
	ir := &interceptor.Registry{}
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return nil, fmt.Errorf("nack generator: %w", err)
	}
	ir.Add(gen)
	rr, err := report.NewReceiverInterceptor()
	if err != nil {
		return nil, fmt.Errorf("receiver reports: %w", err)
	}
	ir.Add(rr)
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return nil, fmt.Errorf("simulcast header extensions: %w", err)
	}
	if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
		return nil, fmt.Errorf("twcc: %w", err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// ICEUDPAddr is the address the ICE UDP mux listens on.
func (s *Server) ICEUDPAddr() net.Addr { return s.udpConn.LocalAddr() }

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

func (s *Server) add(sess session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sessions[sess.id()] = sess
	return true
}

func (s *Server) remove(sess session) {
	s.mu.Lock()
	if s.sessions[sess.id()] == sess {
		delete(s.sessions, sess.id())
	}
	s.mu.Unlock()
}

func (s *Server) lookup(id string) session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

// enter registers a session goroutine that Close waits for; it fails once Close has begun, so no
// goroutine is added while Close waits. A true result must be paired with s.wg.Done.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// goSession runs fn as a session goroutine that Close waits for; once Close has begun it does
// nothing (Close ends every session itself).
func (s *Server) goSession(fn func()) {
	if !s.enter() {
		return
	}
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// Close ends every session, waits for their goroutines, and closes the UDP port.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	all := make([]session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()
	for _, sess := range all {
		sess.close(false)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("close webrtc sessions: %w", ctx.Err())
	}
	if cerr := s.udpMux.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err == nil {
		s.pkt.close() // no group is left to use it
	}
	return err
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
