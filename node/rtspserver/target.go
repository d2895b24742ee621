package rtspserver

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"

	"github.com/bluenviron/gortsplib/v4/pkg/base"

	"github.com/streamfleet/streamfleet/internal/streamname"
)

// parseTarget reads what a request URL names: the stream, from the path (rtsp://node:8554/{stream}),
// and the token of a ?token= query, if any.
func parseTarget(path, query string) (streamname.Name, string, error) {
	p := strings.TrimPrefix(path, "/")
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/") // some clients add a slash to the stream URL
	}
	name, err := streamname.Parse(p)
	if err != nil {
		return "", "", err
	}
	if query == "" {
		return name, "", nil
	}
	v, err := url.ParseQuery(query)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrBadQuery, err)
	}
	return name, v.Get("token"), nil
}

// basicPassword returns the password of an Authorization: Basic header (the user name is ignored:
// the token is the password).
func basicPassword(h base.HeaderValue) (string, bool) {
	if len(h) != 1 {
		return "", false
	}
	method, cred, ok := strings.Cut(strings.TrimSpace(h[0]), " ")
	if !ok || !strings.EqualFold(method, "Basic") {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", false
	}
	_, pass, ok := strings.Cut(string(raw), ":")
	return pass, ok
}

// authorized reports whether a request carries want, as ?token= or as a Basic password. An empty
// want lets everyone in. offered tells whether the client gave any credential at all.
func authorized(req *base.Request, queryToken, want string) (ok, offered bool) {
	pass, hasBasic := basicPassword(req.Header["Authorization"])
	offered = queryToken != "" || hasBasic || len(req.Header["Authorization"]) > 0
	if want == "" {
		return true, offered
	}
	if queryToken != "" && subtle.ConstantTimeCompare([]byte(queryToken), []byte(want)) == 1 {
		return true, true
	}
	if hasBasic && subtle.ConstantTimeCompare([]byte(pass), []byte(want)) == 1 {
		return true, true
	}
	return false, offered
}
