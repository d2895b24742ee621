package rtspserver

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/bluenviron/gortsplib/v4/pkg/base"

	"github.com/streamfleet/streamfleet/internal/streamname"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		path, query string
		name, token string
		err         error
	}{
		{"/live/test", "", "live/test", "", nil},
		{"/live/test/", "", "live/test", "", nil},
		{"/live/test", "token=abc", "live/test", "abc", nil},
		{"/live/test", "a=1&token=x%2By", "live/test", "x+y", nil},
		{"/", "", "", "", streamname.ErrInvalid},
		{"/a/b/c/d/e", "", "", "", streamname.ErrInvalid},
		{"/live/bad name", "", "", "", streamname.ErrInvalid},
		{"/live/..", "", "", "", streamname.ErrInvalid},
		{"/live/test", "token=%zz", "", "", ErrBadQuery},
	} {
		name, token, err := parseTarget(tc.path, tc.query)
		if !errors.Is(err, tc.err) || (err == nil && (string(name) != tc.name || token != tc.token)) {
			t.Errorf("parseTarget(%q, %q) = %q, %q, %v; want %q, %q, %v", tc.path, tc.query, name, token, err, tc.name, tc.token, tc.err)
		}
	}
}

func TestAuthorized(t *testing.T) {
	basic := func(s string) base.HeaderValue {
		return base.HeaderValue{"Basic " + base64.StdEncoding.EncodeToString([]byte(s))}
	}
	for _, tc := range []struct {
		name        string
		auth        base.HeaderValue
		query, want string
		ok, offered bool
	}{
		{"open node", nil, "", "", true, false},
		{"query token", nil, "s3cret", "s3cret", true, true},
		{"basic any user", basic("bob:s3cret"), "", "s3cret", true, true},
		{"basic password with colon", basic("bob:s3:cret"), "", "s3:cret", true, true},
		{"wrong basic", basic("bob:nope"), "", "s3cret", false, true},
		{"wrong query, right basic", basic(":s3cret"), "nope", "s3cret", true, true},
		{"nothing", nil, "", "s3cret", false, false},
		{"digest is not a token", base.HeaderValue{`Digest username="a"`}, "", "s3cret", false, true},
		{"garbage basic", base.HeaderValue{"Basic !!!"}, "", "s3cret", false, true},
	} {
		req := &base.Request{Header: base.Header{}}
		if tc.auth != nil {
			req.Header["Authorization"] = tc.auth
		}
		ok, offered := authorized(req, tc.query, tc.want)
		if ok != tc.ok || offered != tc.offered {
			t.Errorf("%s: ok=%v offered=%v, want %v %v", tc.name, ok, offered, tc.ok, tc.offered)
		}
	}
}

// FuzzTarget feeds request paths, queries and Authorization headers from outside: parsing must
// never panic, and an accepted name is always a valid stream name.
func FuzzTarget(f *testing.F) {
	f.Add("/live/test", "token=abc", "Basic Ym9iOnMzY3JldA==")
	f.Add("/live/test/", "", "")
	f.Add("//", "token=%", "Basic")
	f.Add("/a/b/c/d/e", "token=a;b", "Digest x")
	f.Add("/live/\x00", "&&==", "basic "+base64.StdEncoding.EncodeToString([]byte(":")))
	f.Fuzz(func(t *testing.T, path, query, auth string) {
		name, token, err := parseTarget(path, query)
		if err == nil {
			if _, perr := streamname.Parse(string(name)); perr != nil {
				t.Fatalf("accepted invalid name %q: %v", name, perr)
			}
			if strings.Contains(string(name), "?") {
				t.Fatalf("query leaked into the name %q", name)
			}
			_ = token
		}
		req := &base.Request{Header: base.Header{"Authorization": base.HeaderValue{auth}}}
		if ok, _ := authorized(req, token, "want"); ok && token != "want" {
			if p, has := basicPassword(req.Header["Authorization"]); !has || p != "want" {
				t.Fatalf("authorized without the token: %q %q", token, auth)
			}
		}
	})
}
