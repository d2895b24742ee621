package main

import (
	"context"
	"flag"
	"time"

	"github.com/streamfleet/streamfleet/streammanager"
)

// managerFlags binds a stream manager's flags; settings come, from lowest to highest precedence,
// from the defaults, the --config file, STREAMFLEET_<FLAG> and the command line, as for nodes.
func managerFlags(fs *flag.FlagSet, cfg *streammanager.Config) (finish func() error) {
	var configFile, apiKeys, regionMap string
	fs.StringVar(&configFile, "config", "", "config file: one 'flag = value' per line, # comments")
	fs.StringVar(&cfg.ID, "id", cfg.ID, "manager id, in logs, the leader lease and /api/v1/cluster")
	fs.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "HTTP address: REST API, WHIP/WHEP redirects, pages, dashboard")
	fs.StringVar(&cfg.NATSURL, "nats", cfg.NATSURL, "NATS server URL(s), comma separated (nats:// or tls://)")
	fs.StringVar(&cfg.NATSCredsFile, "nats-creds", cfg.NATSCredsFile, "NATS credentials file (user JWT and NKey seed)")
	fs.StringVar(&cfg.NATSTLSCA, "nats-tls-ca", cfg.NATSTLSCA, "PEM file of the CAs of the NATS servers' certificates")
	fs.StringVar(&cfg.NATSTLSCert, "nats-tls-cert", cfg.NATSTLSCert, "client certificate for NATS (with --nats-tls-key)")
	fs.StringVar(&cfg.NATSTLSKey, "nats-tls-key", cfg.NATSTLSKey, "client key for NATS")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "replication of the KV buckets (3 in a 3-server NATS cluster)")
	fs.StringVar(&apiKeys, "api-key", "", "comma-separated API keys of admin calls (at least 16 characters each; never logged)")
	fs.StringVar(&cfg.TokenSecret, "token-key", cfg.TokenSecret, "HS256 `secret` (at least 32 bytes) that POST /api/v1/tokens signs with; the nodes' --token-key (never logged)")
	fs.StringVar(&cfg.TokenSigningKeyFile, "token-signing-key", cfg.TokenSigningKeyFile, "PEM `file` of an ES256 private key that POST /api/v1/tokens signs with (streamfleet token keygen); nodes verify with --token-pubkey")
	fs.DurationVar(&cfg.TokenMaxTTL, "token-max-ttl", 24*time.Hour, "longest lifetime of a minted token")
	fs.StringVar(&regionMap, "region-map", "", "client networks to regions for lookups without ?region=, e.g. 10.1.0.0/16=eu,10.2.0.0/16=us")
	fs.DurationVar(&cfg.FailAfter, "fail-after", cfg.FailAfter, "a node without a heartbeat for this long is failed and leaves every lookup")
	return func() error {
		if err := applyEnv(fs); err != nil {
			return err
		}
		if configFile != "" {
			if err := applyConfigFile(fs, configFile); err != nil {
				return err
			}
		}
		cfg.APIKeys = splitList(apiKeys)
		rm, err := streammanager.ParseRegionMap(regionMap)
		if err != nil {
			return err
		}
		cfg.RegionMap = rm
		return cfg.Validate()
	}
}

func runManager(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	cfg := streammanager.DefaultConfig()
	log, err := parseCommand(fs, args, managerFlags(fs, &cfg))
	if err != nil {
		return err
	}
	m, err := streammanager.New(cfg, log)
	if err != nil {
		return err
	}
	return serve(ctx, m, nil)
}
