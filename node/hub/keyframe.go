package hub

// keyframeStart reports whether an RTP payload of the given codec (lower-case MIME type) begins a
// keyframe (an independently decodable picture). A reader that starts or resumes on such a packet
// can decode from it. Audio packets, and those of a codec without keyframe detection, always count
// as a start.
func keyframeStart(mimeType string, payload []byte) bool {
	switch mimeType {
	case "video/h264":
		return h264KeyframeStart(payload)
	case "video/h265":
		return h265KeyframeStart(payload)
	case "video/vp8":
		return vp8KeyframeStart(payload)
	case "video/vp9":
		return vp9KeyframeStart(payload)
	case "video/av1":
		return av1KeyframeStart(payload)
	}
	return true
}

// H.264 NAL unit types that open a decodable picture: IDR slice, SPS, PPS.
const (
	h264NALIDR   = 5
	h264NALSPS   = 7
	h264NALSTAPA = 24
	h264NALFUA   = 28
)

// h264KeyframeStart follows RFC 6184: a single NAL packet, a STAP-A (any aggregated unit) or the
// first fragment of an FU-A whose NAL unit is an IDR slice or an SPS.
func h264KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch typ := p[0] & 0x1f; typ {
	case h264NALSTAPA:
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if t := p[i] & 0x1f; t == h264NALIDR || t == h264NALSPS {
				return true
			}
			i += size
		}
		return false
	case h264NALFUA:
		return len(p) >= 2 && p[1]&0x80 != 0 && (p[1]&0x1f == h264NALIDR || p[1]&0x1f == h264NALSPS)
	default:
		return typ == h264NALIDR || typ == h264NALSPS
	}
}

// h265KeyframeStart follows RFC 7798: IRAP pictures (types 16–21) and VPS/SPS (32, 33), alone, in
// an aggregation packet (48) or as the first fragment of a fragmentation unit (49).
func h265KeyframeStart(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	key := func(t byte) bool { return t >= 16 && t <= 21 || t == 32 || t == 33 }
	switch typ := (p[0] >> 1) & 0x3f; typ {
	case 48:
		for i := 2; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if key((p[i] >> 1) & 0x3f) {
				return true
			}
			i += size
		}
		return false
	case 49:
		return len(p) >= 3 && p[2]&0x80 != 0 && key(p[2]&0x3f)
	default:
		return key(typ)
	}
}

// vp8KeyframeStart follows RFC 7741: the start of partition 0 (S=1, PID=0) whose payload header
// has the P (inter-frame) bit clear.
func vp8KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	if p[0]&0x10 == 0 || p[0]&0x07 != 0 { // S bit, partition index
		return false
	}
	i := 1
	if p[0]&0x80 != 0 { // X: extension byte
		if len(p) < 2 {
			return false
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I: picture ID
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K: TID/KEYIDX byte
			i++
		}
	}
	return len(p) > i && p[i]&0x01 == 0
}

// vp9KeyframeStart follows the VP9 RTP payload format: the first packet of a frame (B=1) that is
// not inter-picture predicted (P=0), in the lowest spatial layer.
func vp9KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	const flagI, flagP, flagL, flagB = 0x80, 0x40, 0x20, 0x08
	if p[0]&flagP != 0 || p[0]&flagB == 0 {
		return false
	}
	if p[0]&flagL == 0 {
		return true
	}
	// With layer indices present, only the base spatial layer (SID 0) starts a keyframe.
	i := 1
	if p[0]&flagI != 0 {
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 {
			i += 2
		} else {
			i++
		}
	}
	return len(p) > i && (p[i]>>1)&0x07 == 0
}

// av1KeyframeStart follows the AV1 RTP payload format: the N bit of the aggregation header marks the
// first packet of a coded video sequence, which starts with a keyframe.
func av1KeyframeStart(p []byte) bool {
	return len(p) >= 1 && p[0]&0x08 != 0
}
