package streamname

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"live", true},
		{"live/match1", true},
		{"a/b/c/d", true},
		{"A-z_0.9", true},
		{"", false},
		{"a/b/c/d/e", false},
		{"/live", false},
		{"live/", false},
		{"live//x", false},
		{"live/..", false},
		{".", false},
		{"live match", false},
		{"live%2F", false},
		{"läive", false},
		{strings.Repeat("a", 256), false},
	} {
		got, err := Parse(tc.in)
		if tc.ok && (err != nil || string(got) != tc.in) {
			t.Errorf("Parse(%q) = %q, %v; want ok", tc.in, got, err)
		}
		if !tc.ok && !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %q, %v; want ErrInvalid", tc.in, got, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"live/match1", "a/b/c/d/e", "", "..", "x y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			return
		}
		if string(n) != s || strings.Count(s, "/") >= MaxSegments {
			t.Fatalf("accepted bad name %q", s)
		}
	})
}
