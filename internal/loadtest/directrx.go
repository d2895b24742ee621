package loadtest

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"sync/atomic"

	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// Direct receive: a WHEP subscriber's media is decrypted and measured in its socket's read loop.
//
// pion hands each received SRTP packet across four goroutines (ICE's read loop, the DTLS/SRTP
// demultiplexer, the SRTP session, the track reader), which cost the load tool about 11 µs a
// packet on the benchmark machine, twice what the node spends forwarding it; on a machine shared
// with the node under test that CPU, and the wake-ups, are taken from the node. So once pion has
// delivered a track's first packet (which fires OnTrack and tells the codec), the track is adopted
// here: the socket's reader (stampConn) decrypts the track's later packets itself with the
// session's SRTP keys and measures them at once, instead of passing them on. RTCP, STUN and DTLS
// still go to pion, and so does everything when the keys cannot be found (Config.PionReceive
// turns this off).
//
// The keys: pion does not export a session's SRTP keys, but it writes the DTLS master secret and
// the client random to a key log (SettingEngine.SetDTLSKeyLogWriter, the NSS key log format), and
// the server random is in the ServerHello, which travels in the clear (the subscriber's own when it
// is the DTLS server, as with a pion answerer's default, or the server's). The SRTP master keys
// and salts are the DTLS exporter's output (RFC 5764 §4.2): the TLS 1.2 PRF of the master secret
// over "EXTRACTOR-dtls_srtp" and the two randoms. Neither the protection profile, nor the PRF's
// hash, nor which side is the DTLS client is in the key log, so each combination is tried on the
// first packet and the one whose authentication tag verifies is kept; if none does, the media
// stays with pion.

// Record and handshake types of DTLS 1.2 (RFC 6347) that the ServerHello sniffer reads.
const (
	dtlsHandshake   = 22
	dtlsServerHello = 2
	dtlsRecordLen   = 13 // type, version, epoch, sequence number, length
	dtlsMessageLen  = 12 // type, length, message sequence, fragment offset, fragment length
	tlsRandomLen    = 32
)

// directSlots is how many tracks a subscriber can adopt: video and audio, and room for a restart
// under new SSRCs.
const directSlots = 4

// directRx is one WHEP subscriber's direct receive state.
type directRx struct {
	tracks [directSlots]atomic.Pointer[trackReader]

	mu sync.Mutex
	// From the key log and the ServerHello.
	clientRandom, masterSecret, serverRandom []byte
	// ctx is the session's SRTP context once a packet verified with it; failed is set when no key
	// candidate verified (the media then stays with pion).
	ctx    *srtp.Context
	failed bool
	hdr    rtp.Header
	buf    []byte
	// errors counts adopted packets that did not decrypt (dropped: they count as lost).
	errors uint64
}

func newDirectRx() *directRx {
	return &directRx{buf: make([]byte, 1500)}
}

// Write takes pion's DTLS key log: lines of "CLIENT_RANDOM <client random> <master secret>" in hex.
func (d *directRx) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		f := bytes.Fields(line)
		if len(f) != 3 || string(f[0]) != "CLIENT_RANDOM" {
			continue
		}
		cr, err1 := hex.DecodeString(string(f[1]))
		ms, err2 := hex.DecodeString(string(f[2]))
		if err1 != nil || err2 != nil || len(cr) != tlsRandomLen || len(ms) == 0 {
			continue
		}
		d.mu.Lock()
		d.clientRandom, d.masterSecret = cr, ms
		d.mu.Unlock()
	}
	return len(p), nil
}

// sniff notes the random of a ServerHello in a DTLS datagram, sent or received: a handshake
// record of epoch 0 whose message is a ServerHello starting in it (server_version, then the
// random). Anything else, malformed or not, is ignored.
func (d *directRx) sniff(b []byte) {
	for len(b) >= dtlsRecordLen {
		n := int(binary.BigEndian.Uint16(b[11:]))
		if len(b) < dtlsRecordLen+n {
			return
		}
		typ, epoch, rec := b[0], binary.BigEndian.Uint16(b[3:]), b[dtlsRecordLen:dtlsRecordLen+n]
		b = b[dtlsRecordLen+n:]
		if typ != dtlsHandshake || epoch != 0 || len(rec) < dtlsMessageLen+2+tlsRandomLen ||
			rec[0] != dtlsServerHello || rec[6]|rec[7]|rec[8] != 0 {
			continue
		}
		random := rec[dtlsMessageLen+2 : dtlsMessageLen+2+tlsRandomLen]
		d.mu.Lock()
		d.serverRandom = append(d.serverRandom[:0], random...)
		d.mu.Unlock()
	}
}

// adopt has the socket's reader measure t's packets from now on.
func (d *directRx) adopt(t *trackReader) {
	for i := range d.tracks {
		if d.tracks[i].CompareAndSwap(nil, t) {
			return
		}
	}
}

// release gives t's packets back to pion.
func (d *directRx) release(t *trackReader) {
	for i := range d.tracks {
		d.tracks[i].CompareAndSwap(t, nil)
	}
}

func (d *directRx) track(ssrc uint32) *trackReader {
	for i := range d.tracks {
		if t := d.tracks[i].Load(); t != nil && t.ssrc == ssrc {
			return t
		}
	}
	return nil
}

// consume measures b, received at Unix ns at (0 if unknown), if it is an SRTP packet of an
// adopted track, and reports whether it did; b is then not passed to pion. It runs on the
// socket's read goroutine.
func (d *directRx) consume(b []byte, at int64) bool {
	// RTP by RFC 7983 (first byte 128–191), not RTCP (RFC 5761: second byte 192–223).
	if len(b) < 12 || b[0] < 128 || b[0] > 191 || (b[1] >= 192 && b[1] <= 223) {
		return false
	}
	t := d.track(binary.BigEndian.Uint32(b[8:]))
	if t == nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	pkt, ok := d.decrypt(t, b)
	if !ok {
		return false
	}
	if pkt != nil {
		if seq, payload, ok := rtpPayload(pkt); ok {
			t.packet(seq, payload, at, true)
		}
	}
	return true
}

// decrypt opens b with the session's context, finding it on the first packet. It returns the
// plain packet; nil and true for a packet that is dropped; false when t is given back to pion.
func (d *directRx) decrypt(t *trackReader, b []byte) ([]byte, bool) {
	if d.failed {
		d.release(t)
		return nil, false
	}
	if d.ctx == nil {
		ctx, out := d.findContext(b)
		if ctx == nil {
			d.failed = true
			d.release(t)
			return nil, false
		}
		d.ctx, t.direct = ctx, true
		return out, true
	}
	out, err := d.ctx.DecryptRTP(d.buf, b, &d.hdr)
	if err == nil {
		t.direct = true
		return out, true
	}
	if t.direct {
		d.errors++
		return nil, true
	}
	// A track's first packet here: pion has seen the ones before it, and the sequence numbers
	// may have wrapped in them (the rollover counter is then 1, not 0).
	d.ctx.SetROC(t.ssrc, 1)
	if out, err = d.ctx.DecryptRTP(d.buf, b, &d.hdr); err == nil {
		t.direct = true
		return out, true
	}
	d.release(t)
	return nil, false
}

// findContext tries every candidate key on b (an RTP packet that pion has not seen) and returns the
// context that decrypts it, with b's SSRC state in it, and the plain packet; nil if none does or
// the keys are missing.
func (d *directRx) findContext(b []byte) (*srtp.Context, []byte) {
	if len(d.masterSecret) == 0 || len(d.clientRandom) != tlsRandomLen || len(d.serverRandom) != tlsRandomLen {
		return nil, nil
	}
	ssrc := binary.BigEndian.Uint32(b[8:])
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		for _, hash := range []prf.HashFunc{sha256.New, sha512.New384} {
			exp := keyLogExporter{d.masterSecret, d.clientRandom, d.serverRandom, hash}
			// The node is the DTLS client when it answers with pion's default role (so its
			// keys are the client's: isClient false here), else the server.
			for _, isClient := range []bool{false, true} {
				cfg := srtp.Config{Profile: profile}
				if cfg.ExtractSessionKeysFromDTLS(exp, isClient) != nil {
					continue
				}
				for _, roc := range []uint32{0, 1} {
					ctx, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, profile)
					if err != nil {
						continue
					}
					if roc != 0 {
						ctx.SetROC(ssrc, roc)
					}
					if out, err := ctx.DecryptRTP(d.buf, b, &d.hdr); err == nil {
						return ctx, out
					}
				}
			}
		}
	}
	return nil, nil
}

// undecryptable returns how many adopted packets did not decrypt.
func (d *directRx) undecryptable() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.errors
}

// keyLogExporter is the DTLS 1.2 keying material exporter (RFC 5705) from a key log's secrets.
type keyLogExporter struct {
	masterSecret, clientRandom, serverRandom []byte
	hash                                     prf.HashFunc
}

func (e keyLogExporter) ExportKeyingMaterial(label string, _ []byte, length int) ([]byte, error) {
	seed := make([]byte, 0, len(label)+2*tlsRandomLen)
	seed = append(append(append(seed, label...), e.clientRandom...), e.serverRandom...)
	return prf.PHash(e.masterSecret, seed, length, e.hash)
}
