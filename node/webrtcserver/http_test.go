package webrtcserver

import (
	"testing"

	"github.com/pion/sdp/v3"
)

// TestWithoutCandidates: the candidate lines go, every other byte stays, whatever the line ends.
func TestWithoutCandidates(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"v=0\r\ns=-\r\n", "v=0\r\ns=-\r\n"},
		{"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\na=mid:0\r\n",
			"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"},
		{"v=0\na=candidate:1 1 udp 1 1.2.3.4 9 typ host\na=candidate:2 1 udp 1 1.2.3.5 9 typ host\na=end-of-candidates\n",
			"v=0\na=end-of-candidates\n"},
		{"v=0\r\na=candidate:1 1 udp 1 1.2.3.4 9 typ host", "v=0\r\n"},
		{"a=candidate:1 1 udp 1 1.2.3.4 9 typ host\r\n", ""},
		{"v=0\r\nx=a=candidate:1\r\n", "v=0\r\nx=a=candidate:1\r\n"},
	} {
		if got := withoutCandidates(tc.in); got != tc.want {
			t.Errorf("withoutCandidates(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestICELite: only a session-level a=ice-lite makes a client ICE-lite.
func TestICELite(t *testing.T) {
	parse := func(s string) *sdp.SessionDescription {
		d := &sdp.SessionDescription{}
		if err := d.UnmarshalString(s); err != nil {
			t.Fatal(err)
		}
		return d
	}
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	const media = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
	if !iceLite(parse(head + "a=ice-lite\r\n" + media)) {
		t.Error("a session-level a=ice-lite not seen")
	}
	if iceLite(parse(head+media)) || iceLite(nil) {
		t.Error("ICE-lite without a=ice-lite")
	}
	if iceLite(parse(head + media + "a=ice-lite\r\n")) {
		t.Error("a media-level a=ice-lite taken for the session's")
	}
}
