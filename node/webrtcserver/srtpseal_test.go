package webrtcserver

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/streamfleet/streamfleet/node/hub"
)

// sealerPair is the node's GCM sealer and pion's context under the same random master key.
func sealerPair(t testing.TB, profile srtp.ProtectionProfile) (*gcmSealer, *srtp.Context) {
	t.Helper()
	keyLen, err := profile.KeyLen()
	if err != nil {
		t.Fatal(err)
	}
	saltLen, err := profile.SaltLen()
	if err != nil {
		t.Fatal(err)
	}
	key, salt := make([]byte, keyLen), make([]byte, saltLen)
	rand.Read(key)
	rand.Read(salt)
	s, err := newRTPSealer(profile, key, salt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := srtp.CreateContext(key, salt, profile)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*gcmSealer), ctx
}

// testPacket is an RTP packet of the given stream and sequence number; with extras, it has CSRCs
// and a header extension, so the authenticated header is longer than 12 bytes.
func testPacket(ssrc uint32, seq uint16, extras bool) rtp.Packet {
	p := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: 3000 * uint32(seq), SSRC: ssrc, Marker: seq%3 == 0},
		Payload: bytes.Repeat([]byte{byte(seq), byte(seq >> 8), 0x5a}, 1+int(seq%400)),
	}
	if extras {
		p.CSRC = []uint32{7, 8}
		if err := p.SetExtension(3, []byte{1, 2, 3}); err != nil {
			panic(err)
		}
	}
	return p
}

// sealBoth encrypts the packet with both, the node's in place in a batch-slot-sized buffer, and
// fails unless the two SRTP packets are identical.
func sealBoth(t testing.TB, s *gcmSealer, ctx *srtp.Context, p rtp.Packet) {
	t.Helper()
	plain, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want, err := ctx.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	slot := make([]byte, sendBufSize)
	n := copy(slot, plain)
	got, err := s.seal(slot[:0], slot[:n], p.Header.MarshalSize(), p.SSRC, p.SequenceNumber)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("ssrc %d seq %d: the node's SRTP packet differs from pion's", p.SSRC, p.SequenceNumber)
	}
	if &got[0] != &slot[0] {
		t.Fatal("not sealed in place")
	}
}

// TestGCMSealerMatchesPion: for both AES-GCM profiles, packets of three streams interleaved,
// across a rollover, with resends of packets sent before and after it and with longer headers,
// the node's sealer writes exactly what pion's SRTP context writes.
func TestGCMSealerMatchesPion(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm} {
		t.Run(profile.String(), func(t *testing.T) {
			s, ctx := sealerPair(t, profile)
			starts := []uint16{65000, 1, 40000}
			for i := range 1200 {
				for k, start := range starts {
					seq := start + uint16(i)
					sealBoth(t, s, ctx, testPacket(uint32(100+k), seq, i%7 == 0))
					if i > 20 && i%50 == 0 { // a NACKed packet, resent
						sealBoth(t, s, ctx, testPacket(uint32(100+k), seq-uint16(i%300), false))
					}
				}
			}
			// The first stream passed 65535 at i = 536: resend packets from before the wrap.
			for _, seq := range []uint16{65535, 65400, 65000 + 500} {
				sealBoth(t, s, ctx, testPacket(100, seq, false))
			}
		})
	}
}

// TestGCMSealerErrors: a stream more than a stream's tracks and a header length that is not the
// packet's are errors, not a wrong ciphertext.
func TestGCMSealerErrors(t *testing.T) {
	s, _ := sealerPair(t, srtp.ProtectionProfileAeadAes128Gcm)
	p := testPacket(1, 1, false)
	plain, _ := p.Marshal()
	for ssrc := uint32(1); ssrc <= hub.MaxTracks; ssrc++ {
		if _, err := s.seal(nil, plain, 12, ssrc, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.seal(nil, plain, 12, hub.MaxTracks+1, 1); !errors.Is(err, errSealStreams) {
		t.Fatalf("SSRC %d: %v", hub.MaxTracks+1, err)
	}
	for _, hdrLen := range []int{0, 11, len(plain) + 1} {
		if _, err := s.seal(nil, plain, hdrLen, 1, 2); err == nil {
			t.Fatalf("header of %d bytes accepted", hdrLen)
		}
	}
	if _, err := newRTPSealer(srtp.ProtectionProfileAeadAes128Gcm, make([]byte, 15), make([]byte, 12)); err == nil {
		t.Fatal("a 15-byte key accepted")
	}
	if _, err := newRTPSealer(srtp.ProtectionProfileAeadAes128Gcm, make([]byte, 16), make([]byte, 14)); err == nil {
		t.Fatal("a 14-byte salt accepted")
	}
}

// FuzzGCMSealerMatchesPion drives one stream with sequence numbers from the input — each byte
// pair a step forward (up to 4,095, so across rollovers) or, with the top bit set, a resend up to
// 1,023 behind the newest (a NACK within the node's packet history; never before the first) — and
// compares every packet.
func FuzzGCMSealerMatchesPion(f *testing.F) {
	f.Add(uint16(65530), []byte{0, 1, 0, 1, 0, 1, 0, 9, 0x80, 3, 0, 1})
	f.Add(uint16(0), []byte{0x0f, 0xff, 0x0f, 0xff, 0x83, 0xff, 0x0f, 0xff})
	f.Fuzz(func(t *testing.T, start uint16, steps []byte) {
		s, ctx := sealerPair(t, srtp.ProtectionProfileAeadAes128Gcm)
		newest, sent := start, 0 // sent: how far newest is from start
		sealBoth(t, s, ctx, testPacket(9, newest, false))
		for i := 0; i+1 < len(steps) && i < 400; i += 2 {
			v := uint16(steps[i])<<8 | uint16(steps[i+1])
			seq := newest
			if v&0x8000 != 0 {
				seq -= uint16(min(int(v&0x3ff), sent)) // only what was sent is resent
			} else {
				step := v&0x0fff | 1
				newest += step
				sent += int(step)
				seq = newest
			}
			sealBoth(t, s, ctx, testPacket(9, seq, false))
		}
	})
}

// BenchmarkRTPSeal: one 1,100-byte packet sealed in place for each of 200 viewers in turn, as a
// fan-out round does (each viewer's state cold in the cache), by the node's sealer and by pion's
// context.
func BenchmarkRTPSeal(b *testing.B) {
	p := testPacket(1, 1, false)
	p.Payload = make([]byte, 1100)
	plain, _ := p.Marshal()
	slot := make([]byte, sendBufSize)
	var own, pion []rtpSealer
	for range 200 {
		s, ctx := sealerPair(b, srtp.ProtectionProfileAeadAes128Gcm)
		own, pion = append(own, s), append(pion, &pionSealer{ctx: ctx})
	}
	for _, c := range []struct {
		name    string
		sealers []rtpSealer
	}{{"own", own}, {"pion", pion}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			seq, i := uint16(0), 0
			for b.Loop() {
				if i == len(c.sealers) {
					i = 0
					seq++
					plain[2], plain[3] = byte(seq>>8), byte(seq)
				}
				n := copy(slot, plain)
				if _, err := c.sealers[i].seal(slot[:0], slot[:n], 12, 1, seq); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
