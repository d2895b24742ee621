package webrtcserver

import (
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/internal/token"
	"github.com/streamfleet/streamfleet/node/auth"
)

// credentials reads what a WHIP/WHEP POST presents: "Authorization: Bearer <token>", else a
// ?token= query on the URL (a stream manager's redirect carries the viewer's right that way, since
// browsers drop Authorization on a cross-origin redirect); a Basic header gives user and password.
func credentials(r *http.Request) (tok, user, password string) {
	h := r.Header.Get("Authorization")
	if v, ok := strings.CutPrefix(h, "Bearer "); ok {
		tok = strings.TrimSpace(v)
	} else if v, ok := strings.CutPrefix(h, "Basic "); ok {
		if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v)); err == nil {
			user, password, _ = strings.Cut(string(raw), ":")
		}
	}
	if tok == "" {
		tok = r.URL.Query().Get("token")
	}
	return tok, user, password
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// authorize asks the authorizer whether the POST may publish (WHIP) or play (WHEP) the stream of
// its path. A path that is not a stream name is left for readOffer to refuse (400).
func (s *Server) authorize(r *http.Request, proto string, action token.Action) (*auth.Grant, *apiError) {
	name, err := streamname.Parse(r.PathValue("stream"))
	if err != nil {
		return nil, nil
	}
	tok, user, password := credentials(r)
	g, err := s.auth.Authorize(r.Context(), auth.Request{Action: action, Stream: name.String(), Protocol: proto,
		Token: tok, User: user, Password: password, ClientIP: clientIP(r)})
	if err != nil {
		var ref *auth.Refusal
		if errors.As(err, &ref) {
			return nil, errorf(http.StatusUnauthorized, ref.Code, ref.Message)
		}
		return nil, errorf(http.StatusServiceUnavailable, "shutting_down", "the node is shutting down")
	}
	return g, nil
}
