package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"
)

// hiddenSubcommands are verbs left out of the usage: tools for tests and local clusters.
var hiddenSubcommands = map[string]subcommand{
	"nats": {"run one NATS server with JetStream, optionally a member of a cluster (tests, local HA)", runNATS},
}

// runNATS is `streamfleet nats`: the nats-server the binary embeds, as its own process, so tests
// can run (and SIGKILL) the members of a three-server JetStream cluster. Production runs the
// official nats-server.
func runNATS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	name := fs.String("name", "", "server name (unique in the cluster)")
	listen := fs.String("listen", "127.0.0.1:4222", "client `address`")
	store := fs.String("store", "", "JetStream data `folder` (required)")
	cluster := fs.String("cluster", "", "cluster route `address` (empty: standalone)")
	clusterName := fs.String("cluster-name", "streamfleet", "cluster name")
	routes := fs.String("routes", "", "comma-separated nats-route:// URLs of the other members")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *store == "" || *name == "" {
		return errors.New("--name and --store are required")
	}
	host, port, err := splitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	opts := &server.Options{ServerName: *name, Host: host, Port: port, JetStream: true, StoreDir: *store, NoSigs: true}
	if *cluster != "" {
		ch, cp, err := splitHostPort(*cluster)
		if err != nil {
			return fmt.Errorf("--cluster: %w", err)
		}
		opts.Cluster = server.ClusterOpts{Name: *clusterName, Host: ch, Port: cp}
		opts.Routes = server.RoutesFromStr(*routes)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	s.ConfigureLogger()
	go s.Start()
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return h, port, nil
}
