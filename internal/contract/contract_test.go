package contract

import (
	"errors"
	"testing"
)

func TestRouteKeyRoundTrip(t *testing.T) {
	for _, stream := range []string{"live/test", "a", "x.y/z-1/_/9", "live/match1"} {
		key := RouteKey(stream, "edge-1")
		s, n, err := ParseRouteKey(key)
		if err != nil || s != stream || n != "edge-1" {
			t.Fatalf("ParseRouteKey(%q) = %q, %q, %v", key, s, n, err)
		}
	}
	for _, bad := range []string{"", "noDot", "!!.node", ".node", "bGl2ZQ.", "bGl2ZQ.a.b"} {
		if _, _, err := ParseRouteKey(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ParseRouteKey(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
}

func TestCheckID(t *testing.T) {
	for _, ok := range []string{"edge-1", "A_b-9", "x"} {
		if err := CheckID(ok); err != nil {
			t.Errorf("CheckID(%q) = %v", ok, err)
		}
	}
	long := make([]byte, MaxIDLength+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, bad := range []string{"", "a.b", "a b", "a/b", "*", ">", string(long)} {
		if err := CheckID(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("CheckID(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
}
