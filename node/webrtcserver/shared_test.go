package webrtcserver

import (
	"regexp"
	"testing"
	"time"
)

// TestSharedPerNodeState: viewers and the publisher of a node get the same DTLS certificate (one
// fingerprint in every answer), each still connects and receives media, and pion's loggers are
// made once per scope.
func TestSharedPerNodeState(t *testing.T) {
	ctx, s, base, api, pub := startSR(t, nil)
	a := newSRViewer(ctx, t, api, base+"/whep/live/sr")
	defer a.close()
	b := newSRViewer(ctx, t, api, base+"/whep/live/sr")
	defer b.close()
	waitGrouped(ctx, t, s, 2, a, b)
	sendSR(t, pub, time.Second, 0)

	fp := regexp.MustCompile(`a=fingerprint:\S+ \S+`)
	prints := map[string]bool{}
	for _, answer := range []string{a.pc.RemoteDescription().SDP, b.pc.RemoteDescription().SDP, pub.PC.RemoteDescription().SDP} {
		f := fp.FindString(answer)
		if f == "" {
			t.Fatalf("answer without a fingerprint:\n%s", answer)
		}
		prints[f] = true
	}
	if len(prints) != 1 {
		t.Errorf("fingerprints %v, want the node's one certificate in every answer", prints)
	}
	for _, v := range []*srViewer{a, b} {
		v.mu.Lock()
		n := v.packets[v.ssrc["video"]]
		v.mu.Unlock()
		if n == 0 {
			t.Error("a viewer received no video")
		}
	}
	if s.loggers.NewLogger("ice") != s.loggers.NewLogger("ice") || s.loggers.NewLogger("ice") == s.loggers.NewLogger("dtls") {
		t.Error("loggers are not one per scope")
	}
}

// TestCertSourceRotates: the certificate is kept for a day, then replaced by one valid beyond the
// next rotation.
func TestCertSourceRotates(t *testing.T) {
	now := time.Now()
	c := newCertSource()
	c.now = func() time.Time { return now }
	first, err := c.get()
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(certRotation - time.Second)
	if same, _ := c.get(); !first.Equals(same) {
		t.Error("certificate changed within the day")
	}
	now = now.Add(time.Second)
	next, err := c.get()
	if err != nil || first.Equals(next) {
		t.Errorf("certificate not replaced after a day: %v", err)
	}
	if exp := next.Expires(); exp.Before(time.Now().Add(2 * certRotation)) {
		t.Errorf("new certificate expires %v, before the next rotation", exp)
	}
}
