package loadtest

import "encoding/binary"

// A send-time stamp is the last stampSize bytes of an RTP payload: stampMagic followed by the send
// time in Unix nanoseconds, big-endian. The publisher writes it just before a packet is sent; a
// subscriber that finds the magic computes the one-way delay on the same clock.
const (
	stampSize = 12
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
	binary.BigEndian.PutUint64(tail[4:], uint64(sendTime))
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
	return int64(binary.BigEndian.Uint64(tail[4:])), true
}
