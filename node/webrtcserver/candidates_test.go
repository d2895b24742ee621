package webrtcserver

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/streamfleet/streamfleet/internal/rtctest"
)

// TestAnswerCandidates: a node listening on every address offers no loopback candidate (a client
// elsewhere could only waste checks, and a pion client its first 200 ms, on it), and one
// listening on loopback offers loopback candidates only. The answers are read, not applied, so
// nothing is sent to the node's other addresses.
func TestAnswerCandidates(t *testing.T) {
	for _, tc := range []struct {
		listen   string
		loopback bool // every candidate on loopback; false: none
	}{
		{"127.0.0.1:0", true},
		{"0.0.0.0:0", !hasOtherAddress(t)}, // a machine with IPv4 on loopback alone keeps it
	} {
		_, url := newFanoutServer(t, func(c *Config) { c.ICEUDPAddr = tc.listen })
		ips := answerCandidateIPs(t, url+"/whip/live/cands")
		if len(ips) == 0 { // else the loop below would pass with nothing offered
			t.Errorf("listening on %s: no candidates in the answer", tc.listen)
		}
		for _, ip := range ips {
			if ip.IsLoopback() != tc.loopback {
				t.Errorf("listening on %s: candidate %s in the answer", tc.listen, ip)
			}
		}
	}
}

// TestCandidateAddrs: loopback addresses are left out unless there are no others.
func TestCandidateAddrs(t *testing.T) {
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	lo6 := &net.UDPAddr{IP: net.IPv6loopback, Port: 9}
	lan := &net.UDPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 9}
	lan6 := &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 9}
	for _, tc := range []struct {
		in, want []net.Addr
	}{
		{[]net.Addr{lo, lan, lo6, lan6}, []net.Addr{lan, lan6}},
		{[]net.Addr{lo, lo6}, []net.Addr{lo, lo6}},
		{[]net.Addr{lan}, []net.Addr{lan}},
		{nil, nil},
	} {
		got := candidateAddrs(tc.in)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("candidateAddrs(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// hasOtherAddress tells whether an interface that is up has an IPv4 address off loopback (what a
// node on 0.0.0.0 offers).
func hasOtherAddress(t *testing.T) bool {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				return true
			}
		}
	}
	return false
}

// answerCandidateIPs POSTs a publisher's offer (H264, no candidates) to url and returns the
// addresses of the answer's candidates.
func answerCandidateIPs(t *testing.T, url string) []net.IP {
	t.Helper()
	offer, err := rtctest.OfferSDP(rtctest.H264)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/sdp", strings.NewReader(offer))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("offer: %d %s", resp.StatusCode, body)
	}
	ips, err := rtctest.CandidateIPs(string(body))
	if err != nil {
		t.Fatal(err)
	}
	return ips
}
