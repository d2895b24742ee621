package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/streamfleet/streamfleet/internal/devcluster"
	"github.com/streamfleet/streamfleet/node"
)

// runDev runs the embedded default on 127.0.0.1: an origin (the front door: pages, WHIP, WHEP,
// SRT and RTSP on their default ports), a relay pulling from it and an edge pulling from the relay,
// in one process with a generated cluster secret, and prints every URL a newcomer needs. The
// node flags apply to the origin, and the relay and edge copy them.
func runDev(ctx context.Context, args []string) error {
	cfg := node.DefaultConfig()
	cfg.ID = "dev-origin"
	cfg.HTTPAddr = "127.0.0.1:8081" // 8080 is the stream manager's
	cfg.WebRTC.ICEUDPAddr = "127.0.0.1:8189"
	cfg.RTSP.Addr, cfg.RTSP.UDPRTPAddr, cfg.RTSP.UDPRTCPAddr = "127.0.0.1:8554", "127.0.0.1:8000", "127.0.0.1:8001"
	cfg.SRT.Addr = "127.0.0.1:9000"
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	finish := nodeFlags(fs, &cfg)
	requireTokens := fs.Bool("auth", false, "make the nodes require signed tokens (minted by the manager; the banner prints them)")
	log, err := parseCommand(fs, args, finish)
	if err != nil {
		return err
	}
	if cfg.ClusterSecret == "" {
		cfg.ClusterSecret = devcluster.Secret()
	}
	cp, err := startDevControlPlane(ctx, log, "127.0.0.1:8080", *requireTokens)
	if err != nil {
		return err
	}
	defer cp.close()
	if cfg.NATS.URL == "" {
		cfg.NATS.URL = cp.nats.ClientURL()
	}
	if *requireTokens {
		cfg.Auth.TokenSecrets = append(cfg.Auth.TokenSecrets, cp.tokenSecret) // the nodes trust what the manager mints
	}
	c, err := devcluster.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	var extra []string
	if a := c.Origin.SRTAddr(); a != nil {
		extra = append(extra, srtDevLines(a.String(), cp.tokens)...)
	}
	if a := c.Origin.RTSPAddr(); a != nil {
		extra = append(extra, rtspDevLines(a.String(), cp.tokens)...)
	}
	extra = append(extra, clusterDevLines(c)...)
	extra = append(extra, cp.lines()...)
	front := cp.manager.URL() // pages, WHIP and WHEP through the manager's redirects
	printDevURLs(os.Stdout, front, front, c.Origin.ICEUDPAddr().String(), cp.tokens, extra...)
	select {
	case <-ctx.Done():
	case err = <-c.Err():
	}
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}

// clusterDevLines are the cascade lines of the dev banner: each node and what it pulls from.
func clusterDevLines(c *devcluster.Cluster) []string {
	line := func(role string, n *node.Node, from string) string {
		s := fmt.Sprintf("  %-14s %s   RTSP %s", role, n.HTTPURL(), n.RTSPAddr())
		if a := n.SRTAddr(); a != nil {
			s += "   SRT " + a.String()
		}
		if from != "" {
			s += "   pulls from " + from
		}
		return s
	}
	return []string{
		"  cascade (one cluster secret, generated unless --cluster-secret is given):",
		line("origin", c.Origin, ""),
		line("relay", c.Relay, "the origin"),
		line("edge", c.Edge, "the relay (the origin if the relay is gone)"),
		"    relay and edge find their upstream in the routing table (NATS), their static upstreams as the fallback",
		"    watch any stream on the edge: " + c.Edge.HTTPURL() + "/watch?stream=NAME, WHEP POST " + c.Edge.HTTPURL() + "/whep/NAME",
	}
}

// srtDevLines are the SRT lines of the dev banner: the publish and read URLs, an ffmpeg publish
// and an ffplay read. (ffmpeg 5.1 takes the SRT latency in microseconds.)
func srtDevLines(addr string, tok devTokens) []string {
	pub := "srt://" + addr + "?streamid=publish:live/test"
	read := "srt://" + addr + "?streamid=read:live/test"
	if tok.Publish != "" {
		pub = "srt://" + addr + "?streamid=%23!::r=live/test,m=publish,t=" + tok.Publish
		read = "srt://" + addr + "?streamid=%23!::r=live/test,m=request,t=" + tok.Play
	}
	return []string{
		"  SRT publish    " + pub,
		"  SRT read       " + read,
		"    ffmpeg -re -f lavfi -i testsrc=size=640x360:rate=30 -f lavfi -i sine -c:v libx264 -preset veryfast -tune zerolatency -g 30 -pix_fmt yuv420p -c:a aac -f mpegts \"" + pub + "&latency=120000\"",
		"    ffplay \"" + read + "\"",
		"    OBS: Settings > Stream > Service \"Custom...\", Server " + pub + " (no stream key);",
		"         to watch in OBS, add a Media Source with input " + read,
	}
}

// rtspDevLines are the RTSP lines of the dev banner: the URL, an ffmpeg publish and an ffplay read.
func rtspDevLines(addr string, tok devTokens) []string {
	u := "rtsp://" + addr + "/live/test"
	pub, read := u, u
	if tok.Publish != "" {
		pub, read = u+"?token="+tok.Publish, u+"?token="+tok.Play
	}
	return []string{
		"  RTSP           " + u + "   (publish: ANNOUNCE/RECORD, read: DESCRIBE/PLAY)",
		"    ffmpeg -re -f lavfi -i testsrc=size=640x360:rate=30 -f lavfi -i sine -c:v libx264 -preset veryfast -tune zerolatency -g 30 -pix_fmt yuv420p -c:a aac -f rtsp -rtsp_transport tcp \"" + pub + "\"",
		"    ffplay -rtsp_transport tcp \"" + read + "\"",
	}
}

// printDevURLs prints the dev banner: publish on the origin, watch on the edge; extra lines (other
// protocols' URLs) go after the WebRTC ones.
func printDevURLs(w io.Writer, origin, edge, iceUDP string, tok devTokens, extra ...string) {
	const stream = "live/test"
	lines := []string{
		"streamfleet dev is running. Open these:",
		"",
		"  publish page   " + origin + "/publish?stream=" + stream + query(tok.Publish) + "   (origin)",
		"  watch page     " + edge + "/watch?stream=" + stream + query(tok.Play) + "   (edge, through the relay)",
		"  home           " + origin + "/",
		"",
		"  WHIP ingest    POST " + origin + "/whip/" + stream,
		"  WHEP playback  POST " + edge + "/whep/" + stream,
		"  health         " + origin + "/healthz",
		"  metrics        " + origin + "/metrics   (edge: " + edge + "/metrics)",
		"  ICE (UDP)      " + iceUDP + "   (origin)",
		"",
	}
	if len(extra) > 0 {
		lines = append(append(lines, extra...), "")
	}
	lines = append(lines,
		loadTestLine(origin, tok),
		"",
		"Press Ctrl-C to stop.",
	)
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

// loadTestLine is the banner's load test command, with the dev tokens when auth is on.
func loadTestLine(server string, tok devTokens) string {
	l := "  load test      streamfleet loadtest --server " + server + " --subscribers 50"
	if tok.Publish != "" {
		l += " --publish-token " + tok.Publish + " --token " + tok.Play
	}
	return l
}
