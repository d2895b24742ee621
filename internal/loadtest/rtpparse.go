package loadtest

import "encoding/binary"

// rtpPayload returns the sequence number and payload of a raw RTP packet (RFC 3550 5.1) without
// allocating: it skips CSRCs and the header extension and drops padding.
func rtpPayload(b []byte) (seq uint16, payload []byte, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return 0, nil, false
	}
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < off+4 {
			return 0, nil, false
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	}
	end := len(b)
	if b[0]&0x20 != 0 {
		end -= int(b[end-1])
	}
	if off > end {
		return 0, nil, false
	}
	return binary.BigEndian.Uint16(b[2:]), b[off:end], true
}
