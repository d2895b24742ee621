package loadtest

// h264KeyframeStart reports whether an RTP payload starts an H264 keyframe: an SPS or IDR NAL
// unit, a STAP-A holding one, or the first FU-A fragment of an IDR slice.
func h264KeyframeStart(payload []byte) bool {
	if len(payload) < 2 {
		return false
	}
	switch payload[0] & 0x1f {
	case nalIDR, nalSPS:
		return true
	case nalFUA:
		return payload[1]&0x80 != 0 && payload[1]&0x1f == nalIDR
	case nalSTAPA:
		for p := payload[1:]; len(p) > 2; {
			size := int(p[0])<<8 | int(p[1])
			if size == 0 || len(p) < 2+size {
				return false
			}
			if t := p[2] & 0x1f; t == nalIDR || t == nalSPS {
				return true
			}
			p = p[2+size:]
		}
	}
	return false
}

// vp8KeyframeStart reports whether an RTP payload starts a VP8 keyframe (RFC 7741): the first
// packet of a partition-0 frame whose frame tag has the key frame bit clear.
func vp8KeyframeStart(payload []byte) bool {
	if len(payload) < 1 {
		return false
	}
	x, s, pid := payload[0]&0x80 != 0, payload[0]&0x10 != 0, payload[0]&0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(payload) < 2 {
			return false
		}
		ext := payload[1]
		i = 2
		if ext&0x80 != 0 { // I: picture ID, 7 or 15 bits
			if len(payload) <= i {
				return false
			}
			if payload[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	return len(payload) > i && payload[i]&0x01 == 0
}
