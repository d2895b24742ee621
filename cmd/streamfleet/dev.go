package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/streamfleet/streamfleet/node"
)

// runDev runs the embedded default: one origin on 127.0.0.1 serving pages, WHIP and WHEP, and
// prints every URL a newcomer needs. Later issues add relay, edge, NATS and a manager behind the
// same front door.
func runDev(ctx context.Context, args []string) error {
	cfg := node.DefaultConfig()
	cfg.ID = "dev-origin"
	cfg.HTTPAddr = "127.0.0.1:8080"
	cfg.WebRTC.ICEUDPAddr = "127.0.0.1:8189"
	cfg.RTSP.Addr, cfg.RTSP.UDPRTPAddr, cfg.RTSP.UDPRTCPAddr = "127.0.0.1:8554", "127.0.0.1:8000", "127.0.0.1:8001"
	cfg.SRT.Addr = "127.0.0.1:9000"
	return serveNode(ctx, "dev", cfg, args, func(n *node.Node) {
		var extra []string
		if a := n.SRTAddr(); a != nil {
			extra = append(extra, srtDevLines(a.String())...)
		}
		if a := n.RTSPAddr(); a != nil {
			extra = append(extra, rtspDevLines(a.String())...)
		}
		printDevURLs(os.Stdout, n.HTTPURL(), n.ICEUDPAddr().String(), extra...)
	})
}

// srtDevLines are the SRT lines of the dev banner: the publish and read URLs, an ffmpeg publish
// and an ffplay read. (ffmpeg 5.1 takes the SRT latency in microseconds.)
func srtDevLines(addr string) []string {
	pub := "srt://" + addr + "?streamid=publish:live/test"
	read := "srt://" + addr + "?streamid=read:live/test"
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
func rtspDevLines(addr string) []string {
	u := "rtsp://" + addr + "/live/test"
	return []string{
		"  RTSP           " + u + "   (publish: ANNOUNCE/RECORD, read: DESCRIBE/PLAY)",
		"    ffmpeg -re -f lavfi -i testsrc=size=640x360:rate=30 -f lavfi -i sine -c:v libx264 -preset veryfast -tune zerolatency -g 30 -pix_fmt yuv420p -c:a aac -f rtsp -rtsp_transport tcp " + u,
		"    ffplay -rtsp_transport tcp " + u,
	}
}

// printDevURLs prints the dev banner; extra lines (other protocols' URLs) go after the WebRTC ones.
func printDevURLs(w io.Writer, base, iceUDP string, extra ...string) {
	const stream = "live/test"
	lines := []string{
		"streamfleet dev is running. Open these:",
		"",
		"  publish page   " + base + "/publish?stream=" + stream,
		"  watch page     " + base + "/watch?stream=" + stream,
		"  home           " + base + "/",
		"",
		"  WHIP ingest    POST " + base + "/whip/" + stream,
		"  WHEP playback  POST " + base + "/whep/" + stream,
		"  health         " + base + "/healthz",
		"  metrics        " + base + "/metrics",
		"  ICE (UDP)      " + iceUDP,
		"",
	}
	if len(extra) > 0 {
		lines = append(append(lines, extra...), "")
	}
	lines = append(lines,
		"  load test      streamfleet loadtest --server "+base+" --subscribers 50",
		"",
		"Press Ctrl-C to stop.",
	)
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}
