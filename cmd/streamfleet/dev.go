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
	return serveNode(ctx, "dev", cfg, args, func(n *node.Node) {
		printDevURLs(os.Stdout, n.HTTPURL(), n.ICEUDPAddr().String())
	})
}

func printDevURLs(w io.Writer, base, iceUDP string) {
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
		"  load test      streamfleet loadtest --server " + base + " --subscribers 50",
		"",
		"Press Ctrl-C to stop.",
	}
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}
