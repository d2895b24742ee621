package loadtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// dtlsRecord wraps a handshake message body of type typ in a DTLS record of epoch epoch.
func dtlsRecord(epoch uint16, typ byte, body []byte) []byte {
	msg := make([]byte, dtlsMessageLen, dtlsMessageLen+len(body))
	msg[0] = typ
	msg[3] = byte(len(body)) // length and fragment length: small bodies only
	msg[11] = byte(len(body))
	msg = append(msg, body...)
	rec := make([]byte, dtlsRecordLen, dtlsRecordLen+len(msg))
	rec[0], rec[1], rec[2] = dtlsHandshake, 0xfe, 0xfd
	binary.BigEndian.PutUint16(rec[3:], epoch)
	binary.BigEndian.PutUint16(rec[11:], uint16(len(msg)))
	return append(rec, msg...)
}

// serverHello is a ServerHello body: version, random, then a session id length and more.
func serverHello(random []byte) []byte {
	return append(append([]byte{0xfe, 0xfd}, random...), 0, 0xc0, 0x2b, 0)
}

func TestDirectRxKeyLogAndServerHello(t *testing.T) {
	d := newDirectRx()
	cr := bytes.Repeat([]byte{0xc1}, 32)
	ms := bytes.Repeat([]byte{0x5e}, 48)
	logText := "# a comment\nCLIENT_RANDOM zz 00\nCLIENT_RANDOM 0102 0304\n" +
		fmt.Sprintf("CLIENT_RANDOM %x %x\n", cr, ms)
	if n, err := d.Write([]byte(logText)); n != len(logText) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if !bytes.Equal(d.clientRandom, cr) || !bytes.Equal(d.masterSecret, ms) {
		t.Errorf("key log: client random %x, master secret %x", d.clientRandom, d.masterSecret)
	}

	sr := bytes.Repeat([]byte{0x77}, 32)
	other := bytes.Repeat([]byte{0x11}, 32)
	hvr := dtlsRecord(0, 3, []byte{0xfe, 0xff, 1, 9})               // a HelloVerifyRequest
	encrypted := dtlsRecord(1, dtlsServerHello, serverHello(other)) // epoch 1: not the clear handshake
	fragment := dtlsRecord(0, dtlsServerHello, serverHello(other))
	fragment[dtlsRecordLen+8] = 1 // fragment offset 1: not the message's start
	for _, b := range [][]byte{hvr, encrypted, fragment, {dtlsHandshake, 1, 2}, dtlsRecord(0, dtlsServerHello, []byte{1, 2, 3})} {
		d.sniff(b)
	}
	if d.serverRandom != nil {
		t.Fatalf("server random %x from datagrams without a ServerHello", d.serverRandom)
	}
	// A flight: the ServerHello follows another record in the same datagram.
	d.sniff(append(hvr, dtlsRecord(0, dtlsServerHello, serverHello(sr))...))
	if !bytes.Equal(d.serverRandom, sr) {
		t.Errorf("server random %x, want %x", d.serverRandom, sr)
	}
	// A truncated record after it stops the walk without harm.
	d.sniff(append(dtlsRecord(0, dtlsServerHello, serverHello(sr)), dtlsHandshake, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff))
	if !bytes.Equal(d.serverRandom, sr) {
		t.Errorf("server random %x after a truncated record", d.serverRandom)
	}
}

// directFixture is a subscriber's direct receiver with keys from a key log and a ServerHello, and
// an SRTP context of the node's that encrypts what it sends.
type directFixture struct {
	d    *directRx
	sub  *subscriber
	node *srtp.Context
}

func newDirectFixture(t *testing.T, profile srtp.ProtectionProfile, nodeIsClient bool) *directFixture {
	t.Helper()
	cr := bytes.Repeat([]byte{0xc1}, 32)
	sr := bytes.Repeat([]byte{0x5f}, 32)
	ms := bytes.Repeat([]byte{0x42}, 48)
	d := newDirectRx()
	if _, err := fmt.Fprintf(d, "CLIENT_RANDOM %x %x\n", cr, ms); err != nil {
		t.Fatal(err)
	}
	d.sniff(dtlsRecord(0, dtlsServerHello, serverHello(sr)))
	cfg := srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(keyLogExporter{ms, cr, sr, sha256.New}, nodeIsClient); err != nil {
		t.Fatal(err)
	}
	node, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile)
	if err != nil {
		t.Fatal(err)
	}
	measuring := new(atomic.Bool)
	measuring.Store(true)
	return &directFixture{d: d, sub: newSubscriber(0, nil, new(outTimes), measuring), node: node}
}

func (f *directFixture) srtp(t *testing.T, ssrc uint32, seq uint16) []byte {
	t.Helper()
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: ptOpus, SequenceNumber: seq, SSRC: ssrc}, Payload: []byte("opus frame")}
	plain, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.node.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDirectRxDecrypts checks that an adopted track's packets are found the keys of, for either
// DTLS role and both SRTP profiles, decrypted and measured, including a track whose sequence
// numbers wrapped while pion still read it (rollover counter 1 at adoption); that a packet that
// does not verify afterwards is dropped and counted; and that RTCP and other SSRCs stay with pion.
func TestDirectRxDecrypts(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		for _, nodeIsClient := range []bool{true, false} {
			t.Run(fmt.Sprintf("profile-%d-node-client-%t", profile, nodeIsClient), func(t *testing.T) {
				f := newDirectFixture(t, profile, nodeIsClient)
				audio := &trackReader{s: f.sub, ssrc: 7, keyframeStart: h264KeyframeStart}
				video := &trackReader{s: f.sub, ssrc: 9, isVideo: true, keyframeStart: h264KeyframeStart, requestKeyframe: func() {}}
				f.d.adopt(audio)
				f.d.adopt(video)
				// The first adopted packet finds the keys; then pion has read audio 65534 and
				// 65535, and the read loop gets 0 and 1 (rollover counter 1).
				if !f.d.consume(f.srtp(t, 9, 100), 1) {
					t.Fatal("video packet not consumed")
				}
				f.srtp(t, 7, 65534)
				f.srtp(t, 7, 65535)
				for _, seq := range []uint16{0, 1} {
					if !f.d.consume(f.srtp(t, 7, seq), 1) {
						t.Fatalf("audio packet %d not consumed", seq)
					}
				}
				if audio.viaDirect != 2 || video.viaDirect != 1 || f.sub.audio.seq.receivedTotal() != 2 {
					t.Errorf("measured audio %d (seq counter %d), video %d", audio.viaDirect, f.sub.audio.seq.receivedTotal(), video.viaDirect)
				}
				bad := f.srtp(t, 7, 2)
				bad[len(bad)-1] ^= 1
				if !f.d.consume(bad, 1) || f.d.undecryptable() != 1 || audio.viaDirect != 2 {
					t.Errorf("a corrupted packet: errors %d, measured %d", f.d.undecryptable(), audio.viaDirect)
				}
				rtcpPkt := []byte{0x80, 200, 0, 6, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0}
				if f.d.consume(rtcpPkt, 1) || f.d.consume(f.srtp(t, 11, 5), 1) || f.d.consume([]byte{0x80, 1}, 1) {
					t.Error("RTCP, an unknown SSRC or a runt was consumed")
				}
			})
		}
	}
}

// TestDirectRxFirstPacketWrapped checks that the keys are found when the first adopted packet
// follows a wrap of its sequence numbers that only pion saw.
func TestDirectRxFirstPacketWrapped(t *testing.T) {
	f := newDirectFixture(t, srtp.ProtectionProfileAeadAes128Gcm, true)
	audio := &trackReader{s: f.sub, ssrc: 7, keyframeStart: h264KeyframeStart}
	f.d.adopt(audio)
	f.srtp(t, 7, 65535)
	if !f.d.consume(f.srtp(t, 7, 0), 1) || !f.d.consume(f.srtp(t, 7, 1), 1) || audio.viaDirect != 2 {
		t.Errorf("measured %d packets after the wrap", audio.viaDirect)
	}
}

// TestDirectRxWrongKeysGoesToPion checks that when no key candidate verifies, the track is given
// back to pion, and so is every later one.
func TestDirectRxWrongKeysGoesToPion(t *testing.T) {
	f := newDirectFixture(t, srtp.ProtectionProfileAeadAes128Gcm, true)
	f.d.sniff(dtlsRecord(0, dtlsServerHello, serverHello(bytes.Repeat([]byte{0x99}, 32)))) // a different handshake's
	audio := &trackReader{s: f.sub, ssrc: 7, keyframeStart: h264KeyframeStart}
	f.d.adopt(audio)
	if f.d.consume(f.srtp(t, 7, 1), 1) || f.d.track(7) != nil || !f.d.failed {
		t.Fatalf("undecryptable track kept: failed %t", f.d.failed)
	}
	later := &trackReader{s: f.sub, ssrc: 8, keyframeStart: h264KeyframeStart}
	f.d.adopt(later)
	if f.d.consume(f.srtp(t, 8, 1), 1) || f.d.track(8) != nil {
		t.Error("a track adopted after the keys failed was consumed")
	}
	// Without a key log at all, likewise.
	d := newDirectRx()
	d.adopt(&trackReader{s: f.sub, ssrc: 7})
	if d.consume(f.srtp(t, 7, 2), 1) || !d.failed {
		t.Error("consumed without keys")
	}
}

// FuzzDirectRx feeds arbitrary datagrams to the ServerHello sniffer, the key log and the read
// loop's consumer (with an adopted track and real keys): nothing may panic.
func FuzzDirectRx(f *testing.F) {
	f.Add(dtlsRecord(0, dtlsServerHello, serverHello(bytes.Repeat([]byte{1}, 32))))
	f.Add([]byte("CLIENT_RANDOM 00 00\n"))
	f.Add([]byte{0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 2, 3})
	f.Add([]byte{0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xbe, 0xde, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		fx := newDirectFixture(t, srtp.ProtectionProfileAeadAes128Gcm, true)
		fx.d.adopt(&trackReader{s: fx.sub, ssrc: 7, keyframeStart: h264KeyframeStart})
		fx.d.sniff(b)
		_, _ = fx.d.Write(b)
		fx.d.consume(b, 1)
		fx.d.consume(fx.srtp(t, 7, 3), 1)
		fx.d.consume(b, 1)
	})
}
