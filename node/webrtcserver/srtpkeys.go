package webrtcserver

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/srtp/v3"
)

// Own SRTP keys for viewers. pion encrypts every RTP packet to a viewer through its SRTP session,
// DTLS mux and ICE conn, about 2 µs of locks, lookups and copies per packet on top of the cipher.
// A fan-out group instead encrypts each packet itself, straight into its sendmmsg batch, with keys
// of its own derived exactly as pion's (RFC 5764 §4.2): the node's AES-GCM sealer (srtpseal.go)
// for the GCM profiles, a pion SRTP context of its own for AES-CM. pion does not hand out the keys,
// so they are derived from what its DTLS layer does hand out to a viewer's own API: the key log
// (client random, master secret) and the server hello hook (server random, cipher suite, SRTP
// profile). That needs the node to be the DTLS server, which a WHEP answer may choose (RFC 8842
// §5.3). The first packet of every viewer is encrypted both ways and compared (srtpOut.verify);
// any difference, or a viewer for whom the node is the DTLS client, keeps pion's path.

// keyCapture collects one viewer's DTLS session secrets during its handshake.
type keyCapture struct {
	mu           sync.Mutex
	clientRandom []byte
	masterSecret []byte
	serverRandom []byte
	suite        dtls.CipherSuiteID
	profile      dtls.SRTPProtectionProfile
}

// Write takes pion's key log: "CLIENT_RANDOM <client random> <master secret>" lines (NSS format).
// It never fails, so the handshake never does because of it.
func (k *keyCapture) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(p, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) != 3 || string(f[0]) != "CLIENT_RANDOM" {
			continue
		}
		random, err1 := hex.DecodeString(string(f[1]))
		secret, err2 := hex.DecodeString(string(f[2]))
		if err1 != nil || err2 != nil {
			continue
		}
		k.mu.Lock()
		k.clientRandom, k.masterSecret = random, secret
		k.mu.Unlock()
	}
	return len(p), nil
}

// serverHello is the DTLS server hello hook: it records the server's random, the cipher suite and
// the SRTP profile chosen, and sends the message unchanged.
func (k *keyCapture) serverHello(m handshake.MessageServerHello) handshake.Message {
	random := m.Random.MarshalFixed()
	k.mu.Lock()
	k.serverRandom = random[:]
	if m.CipherSuiteID != nil {
		k.suite = dtls.CipherSuiteID(*m.CipherSuiteID)
	}
	for _, e := range m.Extensions {
		if u, ok := e.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) == 1 {
			k.profile = u.ProtectionProfiles[0]
		}
	}
	k.mu.Unlock()
	return &m
}

var errNoKeys = errors.New("no DTLS server secrets captured")

// ExportKeyingMaterial is the TLS 1.2 exporter (RFC 5705) over the captured secrets, as the node
// is the server: PRF(master secret, label, client random + server random).
func (k *keyCapture) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if len(context) != 0 {
		return nil, errors.New("exporter context not supported")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.masterSecret) == 0 || len(k.clientRandom) != handshake.RandomLength || len(k.serverRandom) != handshake.RandomLength {
		return nil, errNoKeys
	}
	seed := append(append([]byte(label), k.clientRandom...), k.serverRandom...)
	return prf.PHash(k.masterSecret, seed, length, prfHash(k.suite))
}

// prfHash is the PRF hash of a DTLS 1.2 cipher suite: SHA-384 for the *_SHA384 suites, SHA-256 for
// the others (RFC 5246 §5, RFC 5289).
func prfHash(id dtls.CipherSuiteID) prf.HashFunc {
	switch id {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return sha512.New384
	}
	return sha256.New
}

// localSealer is what the node encrypts with (srtpseal.go), made from the captured secrets, which
// are forgotten then.
func (k *keyCapture) localSealer() (rtpSealer, error) {
	k.mu.Lock()
	profile := srtp.ProtectionProfile(k.profile)
	k.mu.Unlock()
	if profile == 0 {
		return nil, errNoKeys
	}
	cfg := srtp.Config{Profile: profile}
	err := cfg.ExtractSessionKeysFromDTLS(k, false)
	k.mu.Lock()
	clear(k.masterSecret)
	k.masterSecret = nil
	k.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("srtp keys: %w", err)
	}
	return newRTPSealer(profile, cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt)
}
