package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/streamfleet/streamfleet/internal/loadtest"
)

// runLoadtest is the loadtest subcommand: flags to loadtest.Config, Run, report to stdout (and to
// a JSON file with --json). It fails when any subscriber failed, after printing the report.
func runLoadtest(ctx context.Context, args []string) error {
	cfg, out, err := loadtestFlags(args)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if out.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	report, err := loadtest.Run(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := report.WriteText(os.Stdout); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if out.jsonPath != "" {
		data, err := json.MarshalIndent(report, "", "  ")
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		if err := os.WriteFile(out.jsonPath, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if n := report.Subscribers.Failed; n > 0 {
		return fmt.Errorf("%d of %d subscribers failed to connect", n, report.Subscribers.Requested)
	}
	return nil
}

// loadtestOutput is where the loadtest subcommand reports, besides stdout.
type loadtestOutput struct {
	jsonPath string
	verbose  bool
}

// loadtestFlags parses the loadtest subcommand's flags into a validated config.
func loadtestFlags(args []string) (loadtest.Config, loadtestOutput, error) {
	cfg := loadtest.DefaultConfig()
	var out loadtestOutput
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: streamfleet loadtest [flags]\n\n"+
			"Publishes synthetic H264 + Opus over WHIP (or SRT) and plays it with N WHEP (or SRT or RTSP)\n"+
			"subscribers, reporting time to first frame, delay, loss, the CPU and memory of --pid\n"+
			"processes, and the node's own fan-out delay from its --node-metrics.\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Server, "server", cfg.Server, "base `URL` of the server (WHIP at /whip/{stream}, WHEP at /whep/{stream})")
	fs.StringVar(&cfg.PublishServer, "publish-server", "", "base `URL` for the WHIP publisher, when it is not --server (an origin, with --server an edge)")
	fs.StringVar(&cfg.Stream, "stream", cfg.Stream, "stream `name`")
	fs.StringVar(&cfg.Token, "token", "", "bearer `token` sent with every WHIP/WHEP request (a play token with --publish-token)")
	fs.StringVar(&cfg.PublishToken, "publish-token", "", "`token` of the publisher instead of --token (signed tokens grant publish or play, not both)")
	fs.Var(&cfg.VideoBitrate, "bitrate", "video `bitrate`, e.g. 600k or 2M")
	fs.Float64Var(&cfg.Pacing, "pacing", cfg.Pacing, "pace WHIP video at `factor` × --bitrate, as a browser's pacer does (0: each frame's packets\n"+
		"back to back); the report shows how long packets waited in the pacer")
	fs.IntVar(&cfg.Subscribers, "subscribers", cfg.Subscribers, "number of WHEP subscribers")
	fs.Float64Var(&cfg.RampPerSecond, "ramp", cfg.RampPerSecond, "subscribers started per second")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "wait after the ramp before measuring")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of the measurement window")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", cfg.ConnectTimeout, "per-session limit for HTTP, ICE and DTLS setup")
	fs.BoolVar(&cfg.NoPublish, "no-publish", false, "only subscribe, to an existing stream")
	fs.BoolVar(&cfg.ReceiverReports, "receiver-reports", false, "subscribers send RTCP receiver reports (implies --pion-receive)")
	fs.BoolVar(&cfg.PionReceive, "pion-receive", false, "WHEP subscribers read media through pion's receive chain instead of decrypting\n"+
		"it in their sockets' read loops (several times the load tool's CPU per packet)")
	fs.BoolVar(&cfg.GRO, "gro", false, "WHEP subscribers' sockets take UDP GRO: a server's GSO run is read as one buffer (on\n"+
		"loopback, where the kernel bills the viewers' receive to the sender; it added delay behind a veth)")
	fs.StringVar(&cfg.Ingest, "ingest", loadtest.ProtoWHIP, "how the publisher sends: whip, or srt (MPEG-TS to --srt)")
	fs.StringVar(&cfg.Protocol, "protocol", loadtest.ProtoWHEP, "how subscribers read: whep, srt (from --srt) or rtsp (from --rtsp)")
	fs.StringVar(&cfg.SRT, "srt", "127.0.0.1:9000", "the server's SRT `host:port`")
	fs.StringVar(&cfg.SRTPassphrase, "srt-passphrase", "", "SRT passphrase")
	fs.DurationVar(&cfg.SRTLatency, "srt-latency", 0, "SRT latency of every SRT session (0: SRT's default, 120ms)")
	fs.StringVar(&cfg.RTSP, "rtsp", "127.0.0.1:8554", "the server's RTSP `host:port`")
	fs.BoolVar(&cfg.RTSPUDP, "rtsp-udp", false, "RTSP subscribers receive over UDP instead of TCP")
	var pids pidList
	fs.Var(&pids, "pid", "server process `pid` to sample CPU and memory of (repeatable, or a comma list)")
	fs.StringVar(&cfg.NodeMetrics, "node-metrics", "", "`URL` of a node's Prometheus metrics, e.g. http://127.0.0.1:8080/metrics: scraped at the start\n"+
		"and end of the window to report the node's own fan-out delay (stream hub to sendmmsg, per datagram;\n"+
		"without the load tool's receive path)")
	fs.StringVar(&out.jsonPath, "json", "", "also write the report as JSON to `file`")
	fs.BoolVar(&out.verbose, "v", false, "log every subscriber failure and debug details")
	if err := fs.Parse(args); err != nil {
		return cfg, out, err
	}
	if fs.NArg() > 0 {
		return cfg, out, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	cfg.PIDs = pids
	return cfg, out, cfg.Validate()
}

// pidList is a repeatable flag of process IDs that also takes comma-separated lists; repeats are
// dropped.
type pidList []int

func (p *pidList) String() string {
	if p == nil {
		return ""
	}
	s := make([]string, len(*p))
	for i, pid := range *p {
		s[i] = strconv.Itoa(pid)
	}
	return strings.Join(s, ",")
}

func (p *pidList) Set(v string) error {
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return errors.New("want a positive process ID")
		}
		if !slices.Contains(*p, pid) {
			*p = append(*p, pid)
		}
	}
	return nil
}
