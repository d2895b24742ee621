package webrtcserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/internal/token"
	"github.com/streamfleet/streamfleet/node/auth"
)

// Register adds the WHIP and WHEP routes to mux:
//
//	POST /whip/{stream}     publish; 201 with the answer and a Location
//	POST /whep/{stream}     play; 201 with the answer and a Location
//	PATCH /sessions/{id}    trickle ICE (application/trickle-ice-sdpfrag)
//	DELETE /sessions/{id}   end a session
//
// and OPTIONS on each for CORS preflights.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /whip/{stream...}", s.serveOffer("whip", token.ActionPublish, func(r *http.Request, w http.ResponseWriter, g *auth.Grant) (string, string, *apiError) {
		ss, answer, err := s.startWHIP(r, w, g)
		if err != nil {
			return "", "", err
		}
		return ss.sid, answer, nil
	}))
	mux.HandleFunc("POST /whep/{stream...}", s.serveOffer("whep", token.ActionPlay, func(r *http.Request, w http.ResponseWriter, g *auth.Grant) (string, string, *apiError) {
		vs, answer, err := s.startWHEP(r, w, g)
		if err != nil {
			return "", "", err
		}
		return vs.sid, answer, nil
	}))
	mux.HandleFunc("OPTIONS /whip/{stream...}", s.handleOptions)
	mux.HandleFunc("OPTIONS /whep/{stream...}", s.handleOptions)
	mux.HandleFunc("PATCH /sessions/{id}", s.handlePatch)
	mux.HandleFunc("DELETE /sessions/{id}", s.handleDelete)
	mux.HandleFunc("OPTIONS /sessions/{id}", s.handleOptions)
}

// serveOffer answers a WHIP or WHEP POST: the client is authorized for action, then start makes
// the session (which owns the grant from then on) and returns its id and the answer, or the error
// the client gets.
func (s *Server) serveOffer(proto string, action token.Action, start func(*http.Request, http.ResponseWriter, *auth.Grant) (string, string, *apiError)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		setCORS(w)
		grant, aerr := s.authorize(r, proto, action)
		var id, answer string
		if aerr == nil {
			id, answer, aerr = start(r, w, grant)
			if aerr != nil {
				grant.End()
			}
		}
		if aerr != nil {
			s.stats.SessionsRejected.Add(1)
			s.log.Info(proto+" rejected", "stream", r.PathValue("stream"), "code", aerr.code, "reason", aerr.message)
			writeError(w, aerr)
			return
		}
		s.writeAnswer(w, id, answer)
	}
}

func setCORS(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST, PATCH, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Access-Control-Expose-Headers", "Location, Link, ETag, Accept-Patch")
}

func (s *Server) handleOptions(w http.ResponseWriter, r *http.Request) {
	setCORS(w)
	w.Header().Set("Accept-Post", "application/sdp")
	s.writeICEServers(w)
	w.WriteHeader(http.StatusNoContent)
}

// writeICEServers announces the configured STUN/TURN servers as Link headers (RFC 9725 §4.6).
func (s *Server) writeICEServers(w http.ResponseWriter) {
	for _, srv := range s.cfg.ICEServers {
		for _, u := range srv.URLs {
			link := fmt.Sprintf(`<%s>; rel="ice-server"`, u)
			if cred, ok := srv.Credential.(string); ok && srv.Username != "" {
				link += fmt.Sprintf(`; username=%q; credential=%q; credential-type="password"`, srv.Username, cred)
			}
			w.Header().Add("Link", link)
		}
	}
}

// offer is a validated SDP offer from a WHIP or WHEP POST.
type offer struct {
	name   streamname.Name
	sdp    string
	parsed *sdp.SessionDescription
}

// readOffer checks everything about an authorized POST that does not need a peer connection: the
// stream name, the content type, the body size and the SDP syntax.
func (s *Server) readOffer(w http.ResponseWriter, r *http.Request) (*offer, *apiError) {
	name, err := streamname.Parse(r.PathValue("stream"))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "invalid_stream_name", err.Error())
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/sdp" {
		return nil, errorf(http.StatusUnsupportedMediaType, "unsupported_content_type", "the offer must be sent as application/sdp")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxSDPBytes))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "offer_too_large", fmt.Sprintf("the offer exceeds %d bytes", s.cfg.MaxSDPBytes))
		}
		return nil, errorf(http.StatusBadRequest, "bad_body", "could not read the offer")
	}
	parsed := &sdp.SessionDescription{}
	if err := parsed.UnmarshalString(string(body)); err != nil {
		return nil, errorf(http.StatusBadRequest, "malformed_sdp", "the offer is not valid SDP: "+err.Error())
	}
	media := 0
	for _, md := range parsed.MediaDescriptions {
		if k := md.MediaName.Media; k == "audio" || k == "video" {
			media++
		}
	}
	if media == 0 {
		return nil, errorf(http.StatusBadRequest, "no_media", "the offer has no audio or video section")
	}
	return &offer{name: name, sdp: string(body), parsed: parsed}, nil
}

// negotiate applies the offer, creates the answer and waits for ICE gathering (immediate with the
// UDP mux: its one host candidate).
func negotiate(ctx context.Context, pc *webrtc.PeerConnection, o *offer, prepare func() error) (string, *apiError) {
	remote := o.sdp
	if !iceLite(o.parsed) {
		remote = withoutCandidates(remote)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: remote}); err != nil {
		return "", errorf(http.StatusBadRequest, "bad_offer", "the offer could not be applied: "+err.Error())
	}
	if prepare != nil {
		if err := prepare(); err != nil {
			return "", errorf(http.StatusNotAcceptable, "unsupported_codec", err.Error())
		}
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", errorf(http.StatusBadRequest, "bad_offer", "no answer can be made to the offer: "+err.Error())
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", errorf(http.StatusBadRequest, "bad_offer", "the answer could not be applied: "+err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", errorf(http.StatusServiceUnavailable, "ice_gathering_timeout", "ICE gathering did not complete")
	}
	return pc.LocalDescription().SDP, nil
}

// writeAnswer sends 201 Created with the answer and the session's Location.
func (s *Server) writeAnswer(w http.ResponseWriter, id, answer string) {
	setCORS(w)
	s.writeICEServers(w)
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/sessions/"+id)
	h.Set("ETag", `"`+id+`"`)
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	setCORS(w)
	sess := s.lookup(r.PathValue("id"))
	if sess == nil {
		writeError(w, errorf(http.StatusNotFound, "session_not_found", "no such session"))
		return
	}
	sess.close(true)
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handlePatch(w http.ResponseWriter, r *http.Request) {
	setCORS(w)
	sess := s.lookup(r.PathValue("id"))
	if sess == nil {
		writeError(w, errorf(http.StatusNotFound, "session_not_found", "no such session"))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/trickle-ice-sdpfrag" {
		writeError(w, errorf(http.StatusUnsupportedMediaType, "unsupported_content_type", "trickle ICE must be sent as application/trickle-ice-sdpfrag"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxSDPBytes))
	if err != nil {
		writeError(w, errorf(http.StatusRequestEntityTooLarge, "fragment_too_large", "the fragment is too large"))
		return
	}
	if err := sess.addCandidates(string(body)); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			writeError(w, ae)
		} else {
			writeError(w, errorf(http.StatusBadRequest, "bad_fragment", err.Error()))
		}
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// addTrickleCandidates checks the candidates of an SDP fragment (RFC 8840) and, for an ICE-lite
// client only, applies them to pc: a full client's checks reach the node anyway, and the node
// answers where they come from (see withoutCandidates). An ICE restart (new credentials) is
// refused: a client restarts by a new POST.
func addTrickleCandidates(pc *webrtc.PeerConnection, frag string) error {
	remote := pc.RemoteDescription()
	lite := false
	if remote != nil { // parsed here: remote.Unmarshal would write pion's copy under its feet
		d := &sdp.SessionDescription{}
		lite = d.UnmarshalString(remote.SDP) == nil && iceLite(d)
	}
	for _, line := range strings.Split(frag, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			if remote != nil && !strings.Contains(remote.SDP, line) {
				return errorf(http.StatusUnprocessableEntity, "ice_restart_unsupported", "ICE restarts are not supported; start a new session")
			}
		case strings.HasPrefix(line, "a=candidate:"):
			raw := strings.TrimPrefix(line, "a=")
			var err error
			if lite {
				err = pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: raw})
			} else {
				_, err = ice.UnmarshalCandidate(raw)
			}
			if err != nil {
				return errorf(http.StatusBadRequest, "bad_candidate", err.Error())
			}
		}
	}
	return nil
}

// The node is a full ICE agent (not ICE-lite): it answers a client's first connectivity check
// with a check of its own (RFC 8445 §7.3.1.4, a triggered check), and a controlling client that
// gets a check on a pair that has already succeeded nominates that pair at once. Against an
// ICE-lite server, which never checks, a client nominates on its own timer instead: pion's every
// 200 ms, most of a pion viewer's time to first frame on loopback.
//
// But a full agent also checks every candidate the offer lists, and an offer names any address
// it likes: up to MaxSDPBytes of candidates, each checked several times, would make the node a
// reflector of STUN traffic at hosts that never asked for it. So the offer's candidates (and
// trickled ones) are not given to the agent: a full client checks the node's candidate anyway,
// from every address it has, and the node learns each as a peer-reflexive candidate from a check
// that carried the session's credentials, then checks only that address — where a lite node
// would have answered. A client that is ICE-lite itself never checks: its candidates are kept.

// iceLite tells whether an offer's session declares ICE-lite (RFC 8839 §5.3).
func iceLite(d *sdp.SessionDescription) bool {
	if d == nil {
		return false
	}
	_, ok := d.Attribute("ice-lite")
	return ok
}

// withoutCandidates is an SDP with its a=candidate lines removed, everything else as it was.
func withoutCandidates(s string) string {
	if !strings.Contains(s, "a=candidate:") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for rest := s; rest != ""; {
		line := rest
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = ""
		}
		if !strings.HasPrefix(line, "a=candidate:") {
			b.WriteString(line)
		}
	}
	return b.String()
}
