package rtspserver

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"strings"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"

	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/internal/token"
	"github.com/streamfleet/streamfleet/node/auth"
)

// authorize asks the authorizer whether the client of req may act on name. The token is the
// ?token= query, else the Basic password (RTSP clients put credentials in the URL's user info);
// the Basic user and password also go to the webhook. A refusal is the 401 to answer.
func (s *Server) authorize(log *slog.Logger, nc net.Conn, req *base.Request, action token.Action, name streamname.Name, queryToken string) (*auth.Grant, *base.Response, error) {
	user, pass, hasBasic := basicCredentials(req.Header["Authorization"])
	tok := queryToken
	if tok == "" && hasBasic {
		tok = pass
	}
	ip := ""
	if nc != nil {
		if host, _, err := net.SplitHostPort(nc.RemoteAddr().String()); err == nil {
			ip = host
		}
	}
	g, err := s.auth.Authorize(s.ctx, auth.Request{Action: action, Stream: name.String(), Protocol: "rtsp",
		Token: tok, User: user, Password: pass, ClientIP: ip})
	if err == nil {
		return g, nil, nil
	}
	offered := queryToken != "" || len(req.Header["Authorization"]) > 0
	var ref *auth.Refusal
	if !errors.As(err, &ref) {
		res, err := s.refuse(log, base.StatusServiceUnavailable, "Service Unavailable", err)
		return nil, res, err
	}
	if offered {
		s.stats.SessionsRejected.Add(1)
		log.Info("rtsp request refused", "status", 401, "code", ref.Code, "reason", ref.Message)
	}
	// Without credentials gortsplib adds the Basic challenge and keeps the connection for the
	// retry; with refused ones it closes it.
	return nil, &base.Response{StatusCode: base.StatusUnauthorized, StatusMessage: "Unauthorized (" + ref.Code + ")"}, liberrors.ErrServerAuth{}
}

// keepGrant holds the grant of a DESCRIBE on its connection until a SETUP of the same stream on
// it takes it over (takeGrant), or the connection closes; a newer one for the stream replaces it.
func (s *Server) keepGrant(c *gortsplib.ServerConn, name streamname.Name, g *auth.Grant) {
	cd, _ := c.UserData().(*conn)
	if cd == nil || g == nil {
		g.End()
		return
	}
	s.mu.Lock()
	if cd.grants == nil {
		cd.grants = map[streamname.Name]*auth.Grant{}
	}
	old := cd.grants[name]
	cd.grants[name] = g
	s.mu.Unlock()
	old.End()
}

// takeGrant takes the grant a DESCRIBE of name left on c, if any.
func (s *Server) takeGrant(c *gortsplib.ServerConn, name streamname.Name) *auth.Grant {
	if c == nil {
		return nil
	}
	cd, _ := c.UserData().(*conn)
	if cd == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := cd.grants[name]
	delete(cd.grants, name)
	return g
}

// endGrants ends the grants a closing connection still holds.
func (s *Server) endGrants(cd *conn) {
	s.mu.Lock()
	grants := cd.grants
	cd.grants = nil
	s.mu.Unlock()
	for _, g := range grants {
		g.End()
	}
}

// basicCredentials returns the user and password of an Authorization: Basic header.
func basicCredentials(h base.HeaderValue) (user, pass string, ok bool) {
	if len(h) != 1 {
		return "", "", false
	}
	method, cred, found := strings.Cut(strings.TrimSpace(h[0]), " ")
	if !found || !strings.EqualFold(method, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(raw), ":")
	return user, pass, ok
}
