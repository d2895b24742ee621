// Command streamfleet runs the streamfleet live-streaming cluster: media nodes, the embedded
// development cluster and the load tool, all from one binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"syscall"
)

// subcommand is one verb of the streamfleet binary.
type subcommand struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

var subcommands = map[string]subcommand{
	"dev":      {"run an origin node with pages, WHIP and WHEP on 127.0.0.1:8080, no configuration", runDev},
	"node":     {"run one media node (--role=origin|relay|edge|transcoder)", runNode},
	"manager":  {"run a stream manager: REST API, load-balanced lookups, WHIP/WHEP redirects, dashboard", runManager},
	"loadtest": {"publish over WHIP and play with N WHEP subscribers; report delay, loss, CPU", runLoadtest},
	"token":    {"mint, verify or make keys for signed publish/play tokens (mint --key ... --stream live/x --action play --ttl 1h)", runToken},
}

// nodeGCPercent is a media node's GOGC unless the environment sets one. A node's heap is mostly
// long-lived session state and its packet path does not allocate, so collecting at 50 % growth
// instead of Go's 100 % costs little CPU and keeps the heap, and so the memory per viewer,
// smaller (docs/BENCHMARKS.md: about 15 KiB per viewer at 600 kbps × 500, CPU within noise).
const nodeGCPercent = 50

// setNodeGC applies nodeGCPercent when getenv has no GOGC, and reports whether it did.
func setNodeGC(getenv func(string) string) bool {
	if getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(nodeGCPercent)
	return true
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: streamfleet <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(subcommands))
	for name := range subcommands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", name, subcommands[name].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'streamfleet <command> -h' for the flags of one command.\n")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmd, ok := subcommands[os.Args[1]]
	if !ok {
		cmd, ok = hiddenSubcommands[os.Args[1]]
	}
	if !ok {
		if os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
			usage()
			return
		}
		fmt.Fprintf(os.Stderr, "streamfleet: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if os.Args[1] == "node" || os.Args[1] == "dev" {
		setNodeGC(os.Getenv)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "streamfleet %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
