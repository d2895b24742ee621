package main

import (
	"flag"

	"github.com/streamfleet/streamfleet/node/agent"
)

// natsFlags binds a node's NATS agent settings: the connection to the stream managers.
func natsFlags(fs *flag.FlagSet, c *agent.Config) {
	fs.StringVar(&c.URL, "nats", c.URL, "NATS server URL(s), comma separated (nats:// or tls://): register with the stream managers; empty runs the node alone")
	fs.StringVar(&c.CredsFile, "nats-creds", c.CredsFile, "NATS credentials file (user JWT and NKey seed)")
	fs.StringVar(&c.TLSCA, "nats-tls-ca", c.TLSCA, "PEM file of the CAs of the NATS servers' certificates")
	fs.StringVar(&c.TLSCert, "nats-tls-cert", c.TLSCert, "client certificate for NATS (with --nats-tls-key)")
	fs.StringVar(&c.TLSKey, "nats-tls-key", c.TLSKey, "client key for NATS")
	fs.StringVar(&c.Region, "region", c.Region, "the node's region, for region-first load balancing")
	fs.StringVar(&c.Cloud, "cloud", c.Cloud, "the node's cloud or site, for operators")
	fs.IntVar(&c.Capacity.Sessions, "capacity-sessions", c.Capacity.Sessions, "most sessions the managers send here (0: no limit)")
	fs.Int64Var(&c.Capacity.BitrateOut, "capacity-bitrate", c.Capacity.BitrateOut, "most outgoing bitrate the managers send here, bits/s (0: no limit)")
	fs.StringVar(&c.AdvertiseHost, "advertise-host", c.AdvertiseHost, "host clients reach this node at, in the URLs announced to the managers (default: the listeners' IPs)")
	fs.StringVar(&c.PublicHTTPURL, "public-url", c.PublicHTTPURL, "public base URL of this node's HTTP server (WHIP, WHEP, HLS), announced to the managers")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat", c.HeartbeatInterval, "how often load is reported to the managers (default 1s)")
}
