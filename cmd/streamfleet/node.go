package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/node"
)

// nodeFlags binds the flags shared by `node` and `dev` to a node configuration. Each setting is
// taken, from lowest to highest precedence, from the defaults, the --config file, an environment
// variable STREAMFLEET_<FLAG> (upper case, dashes as underscores), and the command line.
func nodeFlags(fs *flag.FlagSet, cfg *node.Config) (finish func() error) {
	role := string(cfg.Role)
	var publicIPs, iceServers, configFile, upstreams string
	fs.StringVar(&configFile, "config", "", "config file: one 'flag = value' per line, # comments (see streamfleet.sample.conf)")
	fs.StringVar(&cfg.ID, "id", cfg.ID, "node id, in logs and metrics")
	fs.StringVar(&role, "role", role, "origin, relay, edge or transcoder")
	fs.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "HTTP address: pages, WHIP, WHEP, /healthz, /metrics")
	fs.StringVar(&cfg.WebRTC.ICEUDPAddr, "ice-udp", cfg.WebRTC.ICEUDPAddr, "the one UDP address of every WebRTC session")
	fs.StringVar(&cfg.SRT.Addr, "srt", cfg.SRT.Addr, "SRT UDP address: publish and read MPEG-TS (streamid publish:{stream} / read:{stream}); empty disables SRT")
	fs.StringVar(&cfg.SRT.Passphrase, "srt-passphrase", cfg.SRT.Passphrase, "SRT passphrase (10-79 characters) required of every caller (empty: unencrypted)")
	fs.DurationVar(&cfg.SRT.Latency, "srt-latency", cfg.SRT.Latency, "SRT receive latency offered to callers")
	fs.StringVar(&cfg.RTSP.Addr, "rtsp", cfg.RTSP.Addr, "RTSP TCP address: publish (ANNOUNCE/RECORD) and read (DESCRIBE/PLAY); empty disables RTSP")
	fs.StringVar(&cfg.RTSP.UDPRTPAddr, "rtsp-udp-rtp", cfg.RTSP.UDPRTPAddr, "RTSP UDP transport: RTP address (even port; empty with --rtsp-udp-rtcp empty: TCP only)")
	fs.StringVar(&cfg.RTSP.UDPRTCPAddr, "rtsp-udp-rtcp", cfg.RTSP.UDPRTCPAddr, "RTSP UDP transport: RTCP address (the RTP port + 1)")
	fs.BoolVar(&cfg.WebRTC.PacketSend, "packet-send", cfg.WebRTC.PacketSend, "send RTP to IPv4 WebRTC viewers through an AF_PACKET ring of the egress device, past the IP stack (needs CAP_NET_RAW; skips netfilter's OUTPUT rules)")
	fs.StringVar(&publicIPs, "public-ip", "", "comma-separated public IPs announced as ICE candidates (1:1 NAT)")
	fs.StringVar(&iceServers, "ice-server", "", "comma-separated STUN/TURN URLs handed to clients in Link headers")
	fs.StringVar(&cfg.Auth.PublishToken, "publish-token", cfg.Auth.PublishToken, "static token that allows publishing any stream, on every protocol (empty: none)")
	fs.StringVar(&cfg.Auth.PlayToken, "play-token", cfg.Auth.PlayToken, "static token that allows playing any stream, on every protocol (empty: none)")
	fs.Func("token-key", "HS256 `secret` (at least 32 bytes) that verifies signed publish/play tokens; repeat to rotate keys", func(v string) error {
		cfg.Auth.TokenSecrets = append(cfg.Auth.TokenSecrets, v)
		return nil
	})
	fs.Func("token-pubkey", "PEM `file` of an ES256 public key that verifies signed publish/play tokens; repeat to rotate keys", func(v string) error {
		cfg.Auth.TokenPublicKeyFiles = append(cfg.Auth.TokenPublicKeyFiles, v)
		return nil
	})
	fs.StringVar(&cfg.Auth.WebhookURL, "auth-webhook", cfg.Auth.WebhookURL, "`URL` POSTed a JSON validate event for each publish/play the tokens do not allow (2xx allows), and invalidate when it ends")
	fs.DurationVar(&cfg.Auth.WebhookTimeout, "auth-webhook-timeout", 2*time.Second, "how long the auth webhook may take to answer before the request is refused")
	fs.BoolVar(&cfg.Pprof, "pprof", cfg.Pprof, "serve Go's profiler at /debug/pprof/ (keep off on public nodes)")
	fs.StringVar(&cfg.Transcode.FFmpeg, "ffmpeg", cfg.Transcode.FFmpeg, "ffmpeg binary for transcoding (AAC to Opus for WebRTC viewers)")
	fs.DurationVar(&cfg.Grace, "grace", cfg.Grace, "how long a stream waits for its publisher to come back")
	fs.StringVar(&upstreams, "upstream", strings.Join(cfg.Upstreams, ","), "relay/edge: comma-separated upstream nodes to pull streams from on demand (rtsp://host:port or host:port), the next on failure; with --nats, the fallback after the routing table's")
	fs.StringVar(&cfg.ClusterSecret, "cluster-secret", cfg.ClusterSecret, "shared secret of the cluster's nodes: presented on pulls, and required of all-layers pulls from this node (never logged)")
	fs.DurationVar(&cfg.PullLinger, "pull-linger", cfg.PullLinger, "how long a pulled stream without readers is kept before the pull stops")
	fs.DurationVar(&cfg.WebRTC.ConnectTimeout, "connect-timeout", cfg.WebRTC.ConnectTimeout, "drop a WebRTC peer that has not connected after this long")
	natsFlags(fs, &cfg.NATS)
	return func() error {
		if err := applyEnv(fs); err != nil {
			return err
		}
		if configFile != "" {
			if err := applyConfigFile(fs, configFile); err != nil {
				return err
			}
		}
		r, err := node.ParseRole(role)
		if err != nil {
			return err
		}
		cfg.Role = r
		cfg.WebRTC.PublicIPs = splitList(publicIPs)
		cfg.Upstreams = splitList(upstreams)
		for _, u := range splitList(iceServers) {
			cfg.WebRTC.ICEServers = append(cfg.WebRTC.ICEServers, webrtc.ICEServer{URLs: []string{u}})
		}
		return cfg.Validate()
	}
}

// applyEnv sets every flag not given on the command line from STREAMFLEET_<NAME>, if set.
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		key := "STREAMFLEET_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(key); ok && !given[f.Name] && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", key, e)
			}
		}
	})
	return err
}

// applyConfigFile sets, from a file of "flag = value" lines, every flag that neither the command
// line nor the environment set. Blank lines and lines starting with # are skipped.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true }) // command line, and environment via fs.Set
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" {
			return fmt.Errorf("%s:%d: want 'flag = value'", path, i+1)
		}
		if fs.Lookup(name) == nil || name == "config" {
			return fmt.Errorf("%s:%d: unknown setting %q", path, i+1, name)
		}
		if set[name] {
			continue
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("%s:%d: %s: %w", path, i+1, name, err)
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// parseCommand adds --log-level to fs, parses args, lets finish complete and check the
// configuration the other flags filled in, and returns the logger.
func parseCommand(fs *flag.FlagSet, args []string, finish func() error) (*slog.Logger, error) {
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return newLogger(*logLevel)
}

// service is what a command runs: a node or a stream manager.
type service interface {
	Start(ctx context.Context) error
	Err() <-chan error
	Close() error
}

// serve starts s, calls started (if any) once it serves, and runs it until ctx ends (a signal) or
// it fails, then closes it.
func serve(ctx context.Context, s service, started func()) error {
	if err := s.Start(ctx); err != nil {
		_ = s.Close()
		return err
	}
	if started != nil {
		started()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-s.Err():
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

func runNode(ctx context.Context, args []string) error {
	return serveNode(ctx, "node", node.DefaultConfig(), args, nil)
}

// serveNode parses a node's flags over cfg, runs the node until ctx ends, and calls started (if
// any) once it serves.
func serveNode(ctx context.Context, name string, cfg node.Config, args []string, started func(*node.Node)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	log, err := parseCommand(fs, args, nodeFlags(fs, &cfg))
	if err != nil {
		return err
	}
	n, err := node.New(cfg, log)
	if err != nil {
		return err
	}
	return serve(ctx, n, func() {
		if started != nil {
			started(n)
		}
	})
}
