package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	srt "github.com/datarhei/gosrt"

	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/internal/token"
	"github.com/streamfleet/streamfleet/node"
	"github.com/streamfleet/streamfleet/node/auth"
	"github.com/streamfleet/streamfleet/node/auth/authtest"
	"github.com/streamfleet/streamfleet/node/hub"
)

// These tests drive the node's authorization through every protocol with real clients: pion
// offers over HTTP for WHIP and WHEP, gosrt and ffmpeg for SRT, gortsplib and ffmpeg for RTSP.

// startAuthNode runs a node with the auth config, its log captured (at debug level) to check that
// no secret shows. The stream live/a (H264) is published on its hub for the reads.
func startAuthNode(t *testing.T, cfg auth.Config) (*node.Node, *authtest.Logs) {
	t.Helper()
	logs := &authtest.Logs{}
	c := nodetest.Config()
	c.Auth = cfg
	c.SRT.InputTimeout = 2 * time.Second
	n, err := node.New(c, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("node.Close: %v", err)
		}
	})
	pub, err := n.Hub().Publish("live/a", []hub.TrackSpec{{Codec: rtctest.H264}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.End)
	return n, logs
}

// attempt is one try to publish or play over one protocol with credentials; nil means allowed.
type attempt func(t *testing.T, n *node.Node, stream string, c creds) error

type creds struct {
	token, user, password string
	query                 bool // WHIP/WHEP: the token as ?token= instead of Bearer
}

// refusedError is a refusal as the client saw it.
type refusedError struct{ status, code string }

func (e *refusedError) Error() string { return e.status + " " + e.code }

func httpOffer(kind string) attempt {
	return func(t *testing.T, n *node.Node, stream string, c creds) error {
		t.Helper()
		u := n.HTTPURL() + "/" + kind + "/" + stream
		if c.query && c.token != "" {
			u += "?token=" + url.QueryEscape(c.token)
		}
		codec := rtctest.VP8
		if kind == "whep" {
			codec = rtctest.H264
		}
		req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(offerSDP(t, codec)))
		req.Header.Set("Content-Type", "application/sdp")
		switch {
		case c.user != "":
			req.SetBasicAuth(c.user, c.password)
		case c.token != "" && !c.query:
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusCreated {
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || loc.Path == "" {
				t.Fatalf("201 without a Location: %v", resp.Header)
			}
			if st := rtctest.Delete(n.HTTPURL() + loc.Path); st != http.StatusOK {
				t.Errorf("DELETE %s: %d", loc.Path, st)
			}
			return nil
		}
		var e struct{ Code, Message string }
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
		return &refusedError{strconv.Itoa(resp.StatusCode), e.Code}
	}
}

// srtRejectUnauthorized is how gosrt shows the SRT reject reason 1401 (REJX_UNAUTHORIZED).
var srtRejectUnauthorized = "REJECT (" + strconv.FormatUint(1401, 32) + ")"

func srtDial(mode string) attempt {
	return func(t *testing.T, n *node.Node, stream string, c creds) error {
		t.Helper()
		conf := srt.DefaultConfig()
		conf.StreamId = "#!::r=" + stream + ",m=" + mode
		if c.token != "" {
			conf.StreamId += ",t=" + c.token
		}
		if c.user != "" {
			conf.StreamId += ",u=" + c.user
		}
		conf.ConnectionTimeout = 3 * time.Second
		conn, err := srt.Dial("srt", n.SRTAddr().String(), conf)
		if err != nil {
			if strings.Contains(err.Error(), srtRejectUnauthorized) {
				return &refusedError{"1401", ""}
			}
			return err
		}
		conn.Close()
		return nil
	}
}

func rtspClient(publish bool) attempt {
	return func(t *testing.T, n *node.Node, stream string, c creds) error {
		t.Helper()
		u := &url.URL{Scheme: "rtsp", Host: n.RTSPAddr().String(), Path: "/" + stream}
		if c.token != "" {
			u.RawQuery = "token=" + url.QueryEscape(c.token)
		}
		if c.user != "" {
			u.User = url.UserPassword(c.user, c.password)
		}
		cl := &gortsplib.Client{Scheme: "rtsp", Host: u.Host}
		var err error
		if publish {
			desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo,
				Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}}}}}
			err = cl.StartRecording(u.String(), desc)
		} else {
			if err = cl.Start2(); err == nil {
				var bu *base.URL
				if bu, err = base.ParseURL(u.String()); err == nil {
					_, _, err = cl.Describe(bu)
				}
				if err != nil {
					cl.Close()
				}
			}
		}
		if err == nil {
			cl.Close()
			return nil
		}
		var bad liberrors.ErrClientBadStatusCode
		if errors.As(err, &bad) {
			code := ""
			if i := strings.Index(bad.Message, "("); i >= 0 {
				code = strings.TrimSuffix(bad.Message[i+1:], ")")
			}
			return &refusedError{strconv.Itoa(int(bad.Code)), code}
		}
		return err
	}
}

// protocols are the six ways in, with the action each needs and the stream it uses (reads use
// live/a, publishes their own stream).
var protocols = []struct {
	name   string
	action token.Action
	stream string
	try    attempt
}{
	{"WHIP", token.ActionPublish, "live/whip", httpOffer("whip")},
	{"WHEP", token.ActionPlay, "live/a", httpOffer("whep")},
	{"SRT publish", token.ActionPublish, "live/srt", srtDial("publish")},
	{"SRT read", token.ActionPlay, "live/a", srtDial("request")},
	{"RTSP publish", token.ActionPublish, "live/rtsp", rtspClient(true)},
	{"RTSP read", token.ActionPlay, "live/a", rtspClient(false)},
}

// TestSignedTokensOnEveryProtocol: with HS256 and with ES256 keys, a valid token is accepted on
// WHIP, WHEP, SRT and RTSP, for publish and play; a missing, expired, wrong-stream, wrong-action
// and wrong-signature token is refused with the protocol's own error (401, SRT reject 1401) and
// the refusal's code; no token or key reaches the log.
func TestSignedTokensOnEveryProtocol(t *testing.T) {
	for _, s := range authtest.Signers(t) {
		t.Run(s.Name, func(t *testing.T) {
			n, logs := startAuthNode(t, s.Config)
			var minted []string
			for _, p := range protocols {
				t.Run(p.name, func(t *testing.T) {
					valid := s.Mint(t, p.stream, p.action)
					minted = append(minted, valid)
					if err := p.try(t, n, p.stream, creds{token: valid}); err != nil {
						t.Fatalf("valid token refused: %v", err)
					}
					if strings.HasPrefix(p.name, "WHIP") || strings.HasPrefix(p.name, "WHEP") {
						if err := p.try(t, n, p.stream, creds{token: valid, query: true}); err != nil {
							t.Fatalf("valid token as ?token= refused: %v", err)
						}
					}
					for _, bad := range s.BadTokens(t, p.stream, p.action) {
						minted = append(minted, bad.Token)
						before := n.Auth().Stats().Refused(bad.Code)
						err := p.try(t, n, p.stream, creds{token: bad.Token})
						var ref *refusedError
						if !errors.As(err, &ref) {
							t.Errorf("%s token: %v, want a refusal", bad.Name, err)
							continue
						}
						if want := map[bool]string{true: "1401", false: "401"}[strings.HasPrefix(p.name, "SRT")]; ref.status != want {
							t.Errorf("%s token: refused with %s, want %s", bad.Name, ref.status, want)
						}
						if ref.code != "" && ref.code != bad.Code {
							t.Errorf("%s token: code %q, want %q", bad.Name, ref.code, bad.Code)
						}
						if !strings.HasPrefix(p.name, "SRT") && ref.code == "" {
							t.Errorf("%s token: the refusal names no code", bad.Name)
						}
						if got := n.Auth().Stats().Refused(bad.Code); got <= before {
							t.Errorf("%s token: refusals with %s stayed at %d", bad.Name, bad.Code, got)
						}
					}
				})
			}
			checkNoSecrets(t, logs, append(minted, authtest.Secret)...)
			resp, err := http.Get(n.HTTPURL() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			metrics, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(metrics), `streamfleet_auth_refused_total{code="token_expired",node="node-1",role="origin"} 6`) {
				t.Errorf("/metrics lacks the 6 expired-token refusals:\n%s", grepLines(string(metrics), "streamfleet_auth"))
			}
		})
	}
}

func checkNoSecrets(t *testing.T, logs *authtest.Logs, secrets ...string) {
	t.Helper()
	out := logs.String()
	if !strings.Contains(out, "refused") && !strings.Contains(out, "rejected") {
		t.Fatalf("the log shows no refusal at all; is it captured?\n%s", out)
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		// a JWT's signature part is what must never show; its header part is the same for all
		if i := strings.LastIndex(s, "."); i >= 0 && i+1 < len(s) {
			s = s[i+1:]
		}
		if strings.Contains(out, s) {
			t.Errorf("the log shows a secret (%q…)", s[:min(8, len(s))])
		}
	}
}

// TestSignedTokensWithRealClients publishes with ffmpeg over SRT and RTSP with a valid ES256 token
// (the stream goes live), and sees ffmpeg refused with an expired one.
func TestSignedTokensWithRealClients(t *testing.T) {
	s := authtest.Signers(t)[1]
	n, logs := startAuthNode(t, s.Config)
	srtURL := func(stream, tok string) string {
		id := "#!::r=" + stream + ",m=publish,t=" + tok
		return "srt://" + n.SRTAddr().String() + "?mode=caller&latency=120000&streamid=" + id // ffmpeg 5.1 does not unescape it
	}
	rtspURL := func(stream, tok string) string {
		// not as the URL's password: ffmpeg cuts user:password at 127 bytes, shorter than a JWT
		return "rtsp://" + n.RTSPAddr().String() + "/" + stream + "?token=" + tok
	}
	for _, tc := range []struct {
		name, stream string
		url          func(stream, tok string) string
		format       []string
	}{
		{"SRT", "live/ff-srt", srtURL, []string{"-f", "mpegts"}},
		{"RTSP", "live/ff-rtsp", rtspURL, []string{"-f", "rtsp", "-rtsp_transport", "tcp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expired := s.BadTokens(t, tc.stream, token.ActionPublish)[1]
			before := n.Auth().Stats().Refused(auth.CodeTokenExpired)
			out, err := ffmpegPublish(t, tc.url(tc.stream, expired.Token), tc.format, 2*time.Second)
			if err == nil {
				t.Fatalf("ffmpeg published with an expired token:\n%s", out)
			}
			if n.Auth().Stats().Refused(auth.CodeTokenExpired) <= before {
				t.Fatalf("ffmpeg failed, but not for its expired token:\n%s", out)
			}
			if _, err := n.Hub().Stream(streamname.Name(tc.stream)); err == nil {
				t.Fatal("a refused publish left a stream")
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			var ffOut string
			go func() {
				defer close(done)
				ffOut, _ = ffmpegPublishCtx(ctx, tc.url(tc.stream, s.Mint(t, tc.stream, token.ActionPublish)), tc.format, 20*time.Second)
			}()
			defer func() { cancel(); <-done }()
			deadline := time.Now().Add(15 * time.Second)
			for {
				if st, err := n.Hub().Stream(streamname.Name(tc.stream)); err == nil && st.Live() && st.Tracks()[0].BestLayer() != nil {
					break
				}
				if time.Now().After(deadline) {
					cancel()
					<-done
					t.Fatalf("ffmpeg with a valid token never went live:\n%s\nnode log:\n%s", ffOut, logs.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	checkNoSecrets(t, logs, authtest.Secret)
}

func ffmpegPublish(t *testing.T, u string, format []string, d time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	defer cancel()
	return ffmpegPublishCtx(ctx, u, format, d)
}

func ffmpegPublishCtx(ctx context.Context, u string, format []string, d time.Duration) (string, error) {
	args := []string{"-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=15",
		"-t", fmt.Sprint(d.Seconds()), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15", "-pix_fmt", "yuv420p"}
	args = append(append(args, format...), u)
	out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput()
	return string(out), err
}

// TestAuthWebhookOnEveryProtocol: a node with only the webhook asks it on WHIP, WHEP, SRT and RTSP
// with the right fields, is allowed by a 2xx, refuses on a 403 and on a timeout, and sends
// invalidate when each session ends (WHIP and WHEP DELETE, SRT close, RTSP TEARDOWN).
func TestAuthWebhookOnEveryProtocol(t *testing.T) {
	hook := authtest.NewWebhook(t)
	// A credential-less request is refused, as an RTSP client only sends its credentials after a
	// challenge.
	hook.SetAllow(func(e auth.WebhookEvent) bool { return e.User != "" || e.Token != "" })
	n, logs := startAuthNode(t, auth.Config{WebhookURL: hook.URL, WebhookTimeout: 500 * time.Millisecond})
	const pass, tok = "alice-pass-secret", "hook-token-secret"
	for i, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			stream := p.stream
			if p.action == token.ActionPublish {
				stream += "-hook"
			}
			c := creds{user: "alice", password: pass}
			if strings.HasPrefix(p.name, "SRT") {
				c = creds{user: "alice", token: tok} // SRT carries u= and t=, no password
			}
			hook.Set(http.StatusOK, 0)
			withCreds := func(e auth.WebhookEvent) bool { return e.User == "alice" }
			before := hook.Count("validate", stream, withCreds)
			if err := p.try(t, n, stream, c); err != nil {
				t.Fatalf("allowed by the webhook, refused: %v", err)
			}
			var v auth.WebhookEvent
			for _, e := range hook.Events() {
				if e.Event == "validate" && e.Stream == stream && e.User == "alice" {
					v = e
				}
			}
			want := auth.WebhookEvent{Event: "validate", Action: string(p.action), Protocol: strings.ToLower(strings.Fields(p.name)[0]),
				Stream: stream, User: "alice", Password: c.password, Token: c.token, ClientIP: "127.0.0.1", Session: v.Session, Node: "node-1"}
			if want.Protocol == "rtsp" {
				want.Token = c.password // RTSP's token is ?token=, else the Basic password
			}
			if v != want || v.Session == "" {
				t.Fatalf("validate event %+v, want %+v", v, want)
			}
			if got := hook.Count("validate", stream, withCreds) - before; got != 1 {
				t.Errorf("%d validate events with credentials, want 1 (an RTSP read's SETUP reuses its DESCRIBE's)", got)
			}
			inv := hook.WaitMatch(t, "invalidate", stream, func(e auth.WebhookEvent) bool { return e.Session == v.Session }, 8*time.Second)
			if inv.Session != v.Session || inv.Password != "" || inv.Token != "" || inv.User != "alice" || inv.Action != string(p.action) {
				t.Fatalf("invalidate %+v for validate %+v", inv, v)
			}
			if hook.Count("invalidate", stream, func(e auth.WebhookEvent) bool { return e.Session == v.Session }) != 1 {
				t.Errorf("more than one invalidate for session %s", v.Session)
			}

			// refusals: 403, then a timeout
			for _, r := range []struct {
				status int
				delay  time.Duration
				code   string
			}{{http.StatusForbidden, 0, auth.CodeWebhookRefused}, {http.StatusOK, 2 * time.Second, auth.CodeWebhookError}} {
				hook.Set(r.status, r.delay)
				before := n.Auth().Stats().Refused(r.code)
				start := time.Now()
				err := p.try(t, n, fmt.Sprintf("%s-%d", stream, i), c)
				var ref *refusedError
				if !errors.As(err, &ref) || (ref.code != "" && ref.code != r.code) {
					t.Errorf("webhook %d after %s: %v, want a refusal with %s", r.status, r.delay, err, r.code)
				}
				if n.Auth().Stats().Refused(r.code) <= before {
					t.Errorf("webhook %d after %s: no %s refusal counted", r.status, r.delay, r.code)
				}
				if el := time.Since(start); el > 2500*time.Millisecond {
					t.Errorf("refusal took %s", el)
				}
			}
		})
	}
	checkNoSecrets(t, logs, pass, tok, "hook-url-secret")
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
