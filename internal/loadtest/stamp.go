package loadtest

// A send-time stamp is the last stampSize bytes of an RTP payload (or of an H264 NAL unit, or an
// Opus packet, when the media goes through MPEG-TS): stampMagic followed by the send time in Unix
// nanoseconds, written seven bits a byte, most significant first, each byte with its top bit set.
// No byte of a stamp is zero, so it never forms an H264 start code when a server converts the
// stream to Annex B (SRT, MPEG-TS) and survives repacketization. The publisher writes it just
// before a packet is sent; a subscriber that finds the magic computes the one-way delay on the
// same clock.
const (
	stampTimeBytes = 10 // 70 bits hold any int64
	stampSize      = 4 + stampTimeBytes
	// minStampedPayload leaves at least one byte of the payload's own header before the stamp.
	minStampedPayload = stampSize + 1
)

var stampMagic = [4]byte{'S', 'F', 'd', 't'}

// writeStamp writes the stamp for sendTime (Unix ns) over the end of payload. It reports false and
// leaves payload alone when payload is shorter than minStampedPayload.
func writeStamp(payload []byte, sendTime int64) bool {
	if len(payload) < minStampedPayload {
		return false
	}
	tail := payload[len(payload)-stampSize:]
	copy(tail, stampMagic[:])
	v := uint64(sendTime)
	for i := stampSize - 1; i >= 4; i-- {
		tail[i] = 0x80 | byte(v&0x7f)
		v >>= 7
	}
	return true
}

// readStamp returns the send time stamped at the end of payload, if there is one.
func readStamp(payload []byte) (sendTime int64, ok bool) {
	if len(payload) < minStampedPayload {
		return 0, false
	}
	tail := payload[len(payload)-stampSize:]
	if tail[0] != stampMagic[0] || tail[1] != stampMagic[1] || tail[2] != stampMagic[2] || tail[3] != stampMagic[3] {
		return 0, false
	}
	var v uint64
	for _, b := range tail[4:] {
		if b&0x80 == 0 {
			return 0, false
		}
		v = v<<7 | uint64(b&0x7f)
	}
	return int64(v), true
}
