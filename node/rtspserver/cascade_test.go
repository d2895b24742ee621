package rtspserver

import (
	"encoding/base64"
	"errors"
	"testing"

	"github.com/bluenviron/gortsplib/v4/pkg/base"
)

func TestLayerMID(t *testing.T) {
	for _, tc := range []struct {
		track int
		rid   string
		mid   string
	}{
		{0, "", "t0r"},
		{0, "h", "t0rh"},
		{1, "q", "t1rq"},
		{7, "hi2", "t7rhi2"},
		{0, "l-1", "t0x6c2d31"},
		{2, "a_b", "t2x615f62"},
	} {
		if got := LayerMID(tc.track, tc.rid); got != tc.mid {
			t.Errorf("LayerMID(%d, %q) = %q, want %q", tc.track, tc.rid, got, tc.mid)
		}
		track, rid, err := ParseLayerMID(tc.mid, 8)
		if err != nil || track != tc.track || rid != tc.rid {
			t.Errorf("ParseLayerMID(%q) = %d, %q, %v", tc.mid, track, rid, err)
		}
	}
	for _, bad := range []string{"", "t", "tr", "x0r", "t0", "t8r", "t01r", "t0000r", "t0y", "t0x", "t0xzz", "t0rh-", "t0x" + "61616161616161616161616161616161616161616161616161616161616161616161"} {
		if _, _, err := ParseLayerMID(bad, 8); !errors.Is(err, ErrBadLayerMID) {
			t.Errorf("ParseLayerMID(%q): %v, want ErrBadLayerMID", bad, err)
		}
	}
}

// FuzzParseLayerMID: what an upstream names its medias must never crash a node; what parses
// names a track within the limit and renders back to the same mid.
func FuzzParseLayerMID(f *testing.F) {
	for _, s := range []string{"t0r", "t0rh", "t7x00ff", "t12r", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, mid string) {
		track, rid, err := ParseLayerMID(mid, 8)
		if err != nil {
			return
		}
		if track < 0 || track >= 8 || len(rid) > maxRIDLength {
			t.Fatalf("%q: track %d, RID %q", mid, track, rid)
		}
		back := LayerMID(track, rid)
		if t2, r2, err := ParseLayerMID(back, 8); err != nil || t2 != track || r2 != rid {
			t.Fatalf("%q parses to %d %q, which renders %q, which parses to %d %q, %v", mid, track, rid, back, t2, r2, err)
		}
	})
}

func TestClusterAuthorized(t *testing.T) {
	basic := func(user, pass string) *base.Request {
		return &base.Request{Header: base.Header{"Authorization": base.HeaderValue{"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}}}
	}
	for _, tc := range []struct {
		name   string
		req    *base.Request
		secret string
		want   bool
	}{
		{"right", basic(ClusterUser, "s3cret"), "s3cret", true},
		{"wrong password", basic(ClusterUser, "guess"), "s3cret", false},
		{"other user", basic("admin", "s3cret"), "s3cret", false},
		{"no header", &base.Request{Header: base.Header{}}, "s3cret", false},
		{"no secret configured", basic(ClusterUser, ""), "", false},
		{"not basic", &base.Request{Header: base.Header{"Authorization": base.HeaderValue{"Digest x"}}}, "s3cret", false},
		{"bad base64", &base.Request{Header: base.Header{"Authorization": base.HeaderValue{"Basic !!!"}}}, "s3cret", false},
	} {
		if got := clusterAuthorized(tc.req, tc.secret); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if !allLayers("layers=all") || !allLayers("token=x&layers=all") || allLayers("layers=best") || allLayers("") || allLayers("%zz") {
		t.Error("allLayers")
	}
}
