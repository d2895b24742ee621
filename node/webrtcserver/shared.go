package webrtcserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pion/logging"
	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"
)

// What every peer connection of a node shares, so that a session costs neither the memory nor the
// join time of its own copy (measured at 300 viewers: about 20 KiB of heap per viewer, and the
// handshake's key generation):
//
//   - pion's loggers: a default factory builds five log.Loggers per scope for every connection
//     (a connection asks for about fifteen scopes); sharedLoggers builds each scope once.
//   - the system's network interfaces: pion lists them over netlink for every connection and keeps
//     the list; the node's one UDP mux is bound once, so one list read at start serves them all.
//   - the DTLS certificate: pion makes an ECDSA key and certificate per connection. Sessions'
//     secrets come from their ephemeral ECDHE exchange, not from the certificate, which only
//     authenticates the node by the fingerprint in its answer, so one certificate serves every
//     session; it is replaced daily (pion's are valid a month), and a session keeps the one it
//     started with.

// sharedLoggers is a logging.LoggerFactory that makes one logger per scope and hands it to every
// connection (pion's leveled loggers are safe for concurrent use).
type sharedLoggers struct {
	f       *logging.DefaultLoggerFactory
	mu      sync.Mutex
	byScope map[string]logging.LeveledLogger
}

func newSharedLoggers(level logging.LogLevel) *sharedLoggers {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = level
	return &sharedLoggers{f: f, byScope: map[string]logging.LeveledLogger{}}
}

// NewLogger returns the scope's logger, made on first use.
func (s *sharedLoggers) NewLogger(scope string) logging.LeveledLogger {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.byScope[scope]
	if !ok {
		l = s.f.NewLogger(scope)
		s.byScope[scope] = l
	}
	return l
}

// certRotation is how long one DTLS certificate serves new sessions.
const certRotation = 24 * time.Hour

// certSource hands out the node's current DTLS certificate.
type certSource struct {
	mu   sync.Mutex
	cert *webrtc.Certificate
	made time.Time
	now  func() time.Time
}

func newCertSource() *certSource { return &certSource{now: time.Now} }

// get returns the current certificate, making a new one when there is none or it is a day old.
func (c *certSource) get() (webrtc.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.cert == nil || now.Sub(c.made) >= certRotation {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return webrtc.Certificate{}, fmt.Errorf("dtls key: %w", err)
		}
		cert, err := webrtc.GenerateCertificate(key)
		if err != nil {
			return webrtc.Certificate{}, fmt.Errorf("dtls certificate: %w", err)
		}
		c.cert, c.made = cert, now
	}
	return *c.cert, nil
}

// newPeerConnection makes a peer connection of api with the node's current certificate.
func (s *Server) newPeerConnection(api *webrtc.API) (*webrtc.PeerConnection, *apiError) {
	cert, err := s.certs.get()
	if err == nil {
		var pc *webrtc.PeerConnection
		if pc, err = api.NewPeerConnection(webrtc.Configuration{Certificates: []webrtc.Certificate{cert}}); err == nil {
			return pc, nil
		}
	}
	s.log.Error("new peer connection", "err", err)
	return nil, errorf(http.StatusInternalServerError, "internal", "could not create a peer connection")
}

// fixedNet is the system network with its interface list read once (stdnet.Net reads it when
// made), shared by every connection's ICE agent. The wrapper hides the stdnet.Net from pion's
// continual gathering, which would re-read the list in place: a data race once it is shared.
type fixedNet struct{ transport.Net }

func newFixedNet() (transport.Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("network interfaces: %w", err)
	}
	return fixedNet{n}, nil
}
