package webrtcserver

import (
	"encoding/base64"
	"net/http/httptest"
	"testing"

	"github.com/pion/sdp/v3"
)

func TestChooseCodecs(t *testing.T) {
	offer := func(media string) *sdp.SessionDescription {
		d := &sdp.SessionDescription{}
		if err := d.UnmarshalString("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + media); err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, tc := range []struct {
		name, media string
		want        []string // chosen MIME type per m-line, "" for none
	}{
		{"first supported in offer order",
			"m=video 9 UDP/TLS/RTP/SAVPF 34 98 96\r\na=mid:0\r\na=rtpmap:34 H263/90000\r\na=rtpmap:98 VP9/90000\r\na=fmtp:98 profile-id=0\r\na=rtpmap:96 VP8/90000\r\n",
			[]string{mimeVP9}},
		{"h264 needs packetization-mode 1",
			"m=video 9 UDP/TLS/RTP/SAVPF 102 104\r\na=mid:0\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 profile-level-id=42e01f;packetization-mode=0\r\n" +
				"a=rtpmap:104 H264/90000\r\na=fmtp:104 profile-level-id=640c1f;packetization-mode=1\r\n",
			[]string{mimeH264}},
		{"h264 of an unknown profile",
			"m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 profile-level-id=f4001f;packetization-mode=1\r\n",
			[]string{""}},
		{"vp9 profile 1 refused",
			"m=video 9 UDP/TLS/RTP/SAVPF 98\r\na=mid:0\r\na=rtpmap:98 VP9/90000\r\na=fmtp:98 profile-id=1\r\n",
			[]string{""}},
		{"opus and av1",
			"m=audio 9 UDP/TLS/RTP/SAVPF 0 111\r\na=mid:0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:111 opus/48000/2\r\n" +
				"m=video 9 UDP/TLS/RTP/SAVPF 45\r\na=mid:1\r\na=rtpmap:45 AV1/90000\r\n",
			[]string{mimeOpus, mimeAV1}},
		{"application m-lines are skipped",
			"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n",
			[]string{mimeOpus}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := chooseCodecs(offer(tc.media))
			if len(got) != len(tc.want) {
				t.Fatalf("%d media, want %d", len(got), len(tc.want))
			}
			for i, m := range got {
				if tc.want[i] == "" {
					if m.ok {
						t.Errorf("m-line %d: chose %s, want none", i, m.codec.MimeType)
					}
					continue
				}
				if !m.ok || m.codec.MimeType != tc.want[i] {
					t.Errorf("m-line %d: chose %q (ok=%v), want %s", i, m.codec.MimeType, m.ok, tc.want[i])
				}
			}
		})
	}
}

func TestCredentials(t *testing.T) {
	for _, tc := range []struct {
		header, url         string
		tok, user, password string
	}{
		{"Bearer s3cret", "/whip/a", "s3cret", "", ""},
		{"Bearer  s3cret ", "/whip/a?token=other", "s3cret", "", ""}, // the header wins
		{"", "/whip/a?token=q%2Btok", "q+tok", "", ""},
		{"bearer s3cret", "/whip/a", "", "", ""},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw:x")), "/whip/a?token=t", "t", "alice", "pw:x"},
		{"Basic !!!", "/whip/a", "", "", ""},
		{"s3cret", "/whip/a", "", "", ""},
	} {
		r := httptest.NewRequest("POST", tc.url, nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		tok, user, pw := credentials(r)
		if tok != tc.tok || user != tc.user || pw != tc.password {
			t.Errorf("credentials(%q, %q) = %q %q %q", tc.header, tc.url, tok, user, pw)
		}
	}
}
