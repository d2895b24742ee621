package webrtcserver

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/streamfleet/streamfleet/node/hub"
)

// rtpSealer encrypts one viewer's outgoing RTP. seal encrypts the marshalled packet p, whose
// header is hdrLen bytes and carries ssrc and seq, into dst (which may be p[:0]: in place, with
// room after p for the tag) and returns the SRTP packet.
type rtpSealer interface {
	seal(dst, p []byte, hdrLen int, ssrc uint32, seq uint16) ([]byte, error)
}

// newRTPSealer is the node's own AEAD sealer for the AES-GCM profiles and pion's SRTP context for
// the others (AES-CM with HMAC-SHA1, which browsers offer after GCM).
func newRTPSealer(profile srtp.ProtectionProfile, masterKey, masterSalt []byte) (rtpSealer, error) {
	switch profile {
	case srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm:
		return newGCMSealer(masterKey, masterSalt)
	}
	ctx, err := srtp.CreateContext(masterKey, masterSalt, profile)
	if err != nil {
		return nil, fmt.Errorf("srtp context: %w", err)
	}
	return &pionSealer{ctx: ctx}, nil
}

// pionSealer is pion's SRTP context as an rtpSealer.
type pionSealer struct {
	ctx    *srtp.Context
	parsed rtp.Header // the header as the context reads it back
}

func (s *pionSealer) seal(dst, p []byte, _ int, _ uint32, _ uint16) ([]byte, error) {
	return s.ctx.EncryptRTP(dst, p, &s.parsed)
}

// gcmSealer encrypts RTP with AEAD_AES_128_GCM or AEAD_AES_256_GCM (RFC 7714) and the standard
// library's AES-GCM. It does what pion's context does for these profiles without what a general
// SRTP context needs per packet — parsing the header back, looking the SSRC up in a map, its
// replay and MKI bookkeeping. That alone saved nothing measurable (the viewer's state still had
// to come from memory, wherever it was first touched); what it allows is prefetching: its key's
// AES-GCM state is one object the fan-out round can ask for ahead of the viewer's turn
// (prefetch.go), where pion's sits behind a map. Together, 8–20 % less CPU per packet
// (BENCHMARKS). pion's context stays the reference: a viewer's first packet is encrypted by both,
// and the node uses its own only if the two ciphertexts are identical (srtpOut.verify); the tests
// compare them across rollovers and resends, and a fuzz target with random packets.
type gcmSealer struct {
	aead    cipher.AEAD
	salt    [12]byte
	iv      [12]byte                  // the packet's, here so that it does not escape to the heap
	streams [hub.MaxTracks]sealStream // per SSRC; a viewer has one per track
	n       int
}

// sealStream is one SSRC's rollover counter as its sender keeps it (RFC 3711 §3.3.1).
type sealStream struct {
	ssrc    uint32
	highest uint16 // the highest sequence number sent
	roc     uint32 // its rollover count
}

var errSealStreams = errors.New("srtp: more SSRCs than one viewer's tracks")

// SRTP key derivation labels (RFC 3711 §4.3.1).
const (
	labelSRTPEncryption = 0x00
	labelSRTPSalt       = 0x02
)

func newGCMSealer(masterKey, masterSalt []byte) (*gcmSealer, error) {
	if n := len(masterKey); n != 16 && n != 32 {
		return nil, fmt.Errorf("srtp: AES-GCM master key of %d bytes", n)
	}
	if len(masterSalt) != 12 {
		return nil, fmt.Errorf("srtp: AES-GCM master salt of %d bytes, want 12", len(masterSalt))
	}
	key, err := deriveSRTPKey(labelSRTPEncryption, masterKey, masterSalt, len(masterKey))
	if err != nil {
		return nil, err
	}
	defer clear(key)
	salt, err := deriveSRTPKey(labelSRTPSalt, masterKey, masterSalt, 12)
	if err != nil {
		return nil, err
	}
	defer clear(salt)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("srtp: %w", err)
	}
	aead, err := cipher.NewGCM(block) // 12-byte nonce, 16-byte tag: RFC 7714's
	if err != nil {
		return nil, fmt.Errorf("srtp: %w", err)
	}
	s := &gcmSealer{aead: aead}
	copy(s.salt[:], salt)
	return s, nil
}

// deriveSRTPKey is the SRTP key derivation function with a key derivation rate of 0 (RFC 3711
// §4.3.1 and 4.3.3, used unchanged by RFC 7714 §12): AES in counter mode under the master key,
// its first counter block the master salt with the label XORed into its eighth byte (the label's
// place once the 56-bit "label || index DIV kdr" is aligned to the salt's end; the index part is
// zero), the block counter in the last two bytes.
func deriveSRTPKey(label byte, masterKey, masterSalt []byte, n int) ([]byte, error) {
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, fmt.Errorf("srtp key derivation: %w", err)
	}
	var in [aes.BlockSize]byte
	copy(in[:], masterSalt)
	in[7] ^= label
	out := make([]byte, (n+aes.BlockSize-1)/aes.BlockSize*aes.BlockSize)
	for i := 0; i*aes.BlockSize < n; i++ {
		binary.BigEndian.PutUint16(in[aes.BlockSize-2:], uint16(i))
		block.Encrypt(out[i*aes.BlockSize:], in[:])
	}
	return out[:n], nil
}

// rollover is the ROC that seq is sent under, from the stream's highest sequence number sent so
// far: a sequence number ahead of it (by less than half the space) is new, and past a wrap starts
// the next ROC; one at or behind it is a resend, before the last wrap if it is numerically above.
func (st *sealStream) rollover(seq uint16) uint32 {
	if d := int16(seq - st.highest); d > 0 {
		if seq < st.highest {
			st.roc++
		}
		st.highest = seq
		return st.roc
	}
	if seq > st.highest && st.roc > 0 {
		return st.roc - 1
	}
	return st.roc
}

// stream finds or adds the SSRC's state; its first sequence number starts ROC 0.
func (s *gcmSealer) stream(ssrc uint32, seq uint16) (*sealStream, bool) {
	for i := range s.streams[:s.n] {
		if s.streams[i].ssrc == ssrc {
			return &s.streams[i], true
		}
	}
	if s.n == len(s.streams) {
		return nil, false
	}
	st := &s.streams[s.n]
	*st = sealStream{ssrc: ssrc, highest: seq}
	s.n++
	return st, true
}

func (s *gcmSealer) seal(dst, p []byte, hdrLen int, ssrc uint32, seq uint16) ([]byte, error) {
	if hdrLen < 12 || hdrLen > len(p) {
		return nil, fmt.Errorf("srtp: header of %d bytes in a packet of %d", hdrLen, len(p))
	}
	st, ok := s.stream(ssrc, seq)
	if !ok {
		return nil, errSealStreams
	}
	roc := st.rollover(seq)
	// The IV (RFC 7714 §8.1): 2 zero bytes, SSRC, ROC, SEQ, XORed with the session salt.
	iv := &s.iv
	*iv = [12]byte{}
	binary.BigEndian.PutUint32(iv[2:], ssrc)
	binary.BigEndian.PutUint32(iv[6:], roc)
	binary.BigEndian.PutUint16(iv[10:], seq)
	for i := range iv {
		iv[i] ^= s.salt[i]
	}
	// The header stays in the clear and is authenticated; the payload is encrypted after it (in
	// place when dst is p's storage, which has room for the tag: the header copy is then onto
	// itself).
	out := append(slices.Grow(dst[:0], len(p)+s.aead.Overhead()), p[:hdrLen]...)
	sealed := s.aead.Seal(out[hdrLen:hdrLen], iv[:], p[hdrLen:], out[:hdrLen])
	return out[:hdrLen+len(sealed)], nil
}
