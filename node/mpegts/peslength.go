package mpegts

import "io"

// Most encoders (ffmpeg, OBS, and the demuxer's own muxer library) leave PES_packet_length at zero
// for video, which the standard allows: the PES then ends where the next one on its PID starts. A
// demuxer must wait for that next PES, so every video frame would leave the node one frame late
// (33 ms at 30 fps). pesLengthFiller removes that wait. It holds the TS packets of each video PES
// and, once it sees the PES's last packet, writes the PES's real length into its header and
// releases the packets, so the demuxer emits the access unit at once.
//
// The last TS packet of a PES is the one padded with adaptation-field stuffing: a muxer fills the
// remainder of a packet that way only when the PES ends inside it. A PES that ends exactly on a
// packet boundary (no stuffing), or that is longer than the 16-bit length field can say, is
// released unchanged when the next one starts, which costs that PES the old one-frame wait and
// nothing else. The filler never drops, reorders across a PID, or invents bytes: it only delays
// the packets of an open video PES and patches two length bytes.
type pesLengthFiller struct {
	r io.Reader

	buf  []byte // read buffer
	in   []byte // bytes read but not yet split into packets
	out  []byte // packets ready for the reader
	pids map[uint16]*pidState
	// passthrough is set once the input is not a sequence of 188-byte packets starting with the
	// sync byte: the filler then stops interfering and forwards everything as read.
	passthrough bool
}

// pidState is what the filler knows of one video PID.
type pidState struct {
	held *heldPES // the PES being held, if any
	// open is set when the last PES was passed on without a length: the demuxer still
	// accumulates it and will flush it at the next PES start.
	open bool
}

type heldPES struct {
	packets []byte // whole TS packets of the PES, in order
	size    int    // PES bytes (header included) in them
}

const (
	tsPacketSize = 188
	tsSync       = 0x47
	// maxHeldPES bounds what is held for one PID; a longer PES is released unchanged.
	maxHeldPES = 6 + 0xffff
)

func newPESLengthFiller(r io.Reader) *pesLengthFiller {
	return &pesLengthFiller{r: r, pids: map[uint16]*pidState{}}
}

func (f *pesLengthFiller) Read(p []byte) (int, error) {
	for len(f.out) == 0 {
		if f.passthrough && len(f.in) > 0 {
			f.out, f.in = f.in, nil
			break
		}
		if f.buf == nil {
			f.buf = make([]byte, 7*tsPacketSize*4)
		}
		n, err := f.r.Read(f.buf)
		f.in = append(f.in, f.buf[:n]...)
		f.split()
		if err != nil {
			if len(f.out) == 0 {
				f.flushHeld()
				f.out, f.in = append(f.out, f.in...), nil
				if len(f.out) == 0 {
					return 0, err
				}
			}
			break
		}
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	return n, nil
}

// split moves every whole packet of f.in through the filler.
func (f *pesLengthFiller) split() {
	for !f.passthrough && len(f.in) >= tsPacketSize {
		if f.in[0] != tsSync {
			// Lost alignment: release everything and stop filling lengths.
			f.flushHeld()
			f.passthrough = true
			return
		}
		f.packet(f.in[:tsPacketSize])
		f.in = f.in[tsPacketSize:]
	}
	if f.passthrough {
		f.out = append(f.out, f.in...)
		f.in = nil
	}
}

// packet handles one TS packet.
func (f *pesLengthFiller) packet(pkt []byte) {
	pid := uint16(pkt[1]&0x1f)<<8 | uint16(pkt[2])
	pusi := pkt[1]&0x40 != 0
	payload, stuffed, ok := tsPayload(pkt)
	st := f.pids[pid]
	if pusi {
		if st != nil && st.held != nil {
			f.release(st, true) // it ended where this one starts
		}
		if ok && isVideoPES(payload) && pesLength(payload) == 0 {
			if st == nil {
				st = &pidState{}
				f.pids[pid] = st
			}
			st.held = &heldPES{}
		}
	}
	if st == nil || st.held == nil {
		f.out = append(f.out, pkt...)
		return
	}
	h := st.held
	h.packets = append(h.packets, pkt...)
	if ok {
		h.size += len(payload)
	}
	switch {
	case h.size > maxHeldPES:
		f.release(st, false)
	case stuffed:
		f.release(st, true)
	}
}

// release passes the held packets of a PID on, with the PES length filled in when the PES is
// complete and the length fits. The demuxer loses a PES of length zero that is followed by one
// complete in its first packet (it flushes the first and then overwrites it with the second), so
// a PES that follows one released without a length keeps its zero length if it is a single packet.
func (f *pesLengthFiller) release(st *pidState, complete bool) {
	h := st.held
	st.held = nil
	single := len(h.packets) == tsPacketSize
	if complete && h.size-6 <= 0xffff && !(single && st.open) {
		if payload, _, ok := tsPayload(h.packets[:tsPacketSize]); ok && len(payload) >= 6 {
			n := h.size - 6
			payload[4], payload[5] = byte(n>>8), byte(n)
			st.open = false
		}
	} else {
		st.open = true
	}
	f.out = append(f.out, h.packets...)
}

// flushHeld releases every held PES unchanged.
func (f *pesLengthFiller) flushHeld() {
	for _, st := range f.pids {
		if st.held != nil {
			f.release(st, false)
		}
	}
}

// tsPayload returns the payload of a TS packet and whether its adaptation field carries stuffing
// (bytes beyond its flags and the fields they announce).
func tsPayload(pkt []byte) (payload []byte, stuffed, ok bool) {
	afc := (pkt[3] >> 4) & 0x3
	off := 4
	if afc&0x2 != 0 { // adaptation field
		afLen := int(pkt[4])
		if 5+afLen > tsPacketSize {
			return nil, false, false
		}
		if afLen == 0 {
			stuffed = true // a lone length byte: one byte of stuffing
		} else {
			flags := pkt[5]
			used := 1
			if flags&0x10 != 0 { // PCR
				used += 6
			}
			if flags&0x08 != 0 { // OPCR
				used += 6
			}
			if flags&0x04 != 0 { // splice countdown
				used++
			}
			if flags&0x02 != 0 || flags&0x01 != 0 {
				// Private data or an extension: their lengths vary; do not guess at stuffing.
				used = afLen
			}
			stuffed = afLen > used
		}
		off = 5 + afLen
	}
	if afc&0x1 == 0 || off >= tsPacketSize {
		return nil, stuffed, false
	}
	return pkt[off:], stuffed, true
}

// isVideoPES reports whether a PES starts here with a video stream ID (0xE0–0xEF).
func isVideoPES(p []byte) bool {
	return len(p) >= 6 && p[0] == 0 && p[1] == 0 && p[2] == 1 && p[3]&0xf0 == 0xe0
}

func pesLength(p []byte) int { return int(p[4])<<8 | int(p[5]) }
