package agent

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/streamfleet/streamfleet/internal/contract"
)

// Config configures a node's NATS agent. An empty URL disables it.
type Config struct {
	// URL is the NATS server (or comma-separated servers) to connect to, e.g. nats://127.0.0.1:4222.
	URL string
	// CredsFile is a NATS credentials file (user JWT and NKey seed), if the servers need one.
	CredsFile string
	// TLSCA is a PEM file of the CAs that sign the servers' certificates (tls:// URLs).
	TLSCA string
	// TLSCert and TLSKey are a client certificate and key, for servers that verify clients.
	TLSCert, TLSKey string
	// Region and Cloud place the node, for the managers' region-first load balancing.
	Region, Cloud string
	// Capacity is what the node declares it can carry.
	Capacity contract.Capacity
	// AdvertiseHost is the host clients reach the node at, used in the URLs the node announces
	// when PublicHTTPURL is empty and for SRT and RTSP. Empty: the listeners' IPs (127.0.0.1 for a
	// wildcard listener).
	AdvertiseHost string
	// PublicHTTPURL overrides the announced HTTP base URL (e.g. https://edge1.example.com).
	PublicHTTPURL string
	// HeartbeatInterval is how often load is reported (1–2 s; default contract.HeartbeatInterval).
	HeartbeatInterval time.Duration
}

// Enabled reports whether a NATS URL is set.
func (c Config) Enabled() bool { return c.URL != "" }

// Validate checks the configuration; a disabled agent is always valid.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	if c.CredsFile != "" {
		if _, err := os.Stat(c.CredsFile); err != nil {
			errs = append(errs, fmt.Errorf("nats credentials: %w", err))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("nats TLS certificate and key go together"))
	}
	for _, f := range []string{c.TLSCA, c.TLSCert, c.TLSKey} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				errs = append(errs, fmt.Errorf("nats TLS: %w", err))
			}
		}
	}
	if c.Capacity.Sessions < 0 || c.Capacity.BitrateOut < 0 {
		errs = append(errs, errors.New("capacity must not be negative"))
	}
	if c.HeartbeatInterval != 0 && (c.HeartbeatInterval < 100*time.Millisecond || c.HeartbeatInterval > 2*time.Second) {
		errs = append(errs, fmt.Errorf("heartbeat interval %v: want 100ms to 2s", c.HeartbeatInterval))
	}
	if c.PublicHTTPURL != "" {
		if u, err := url.Parse(c.PublicHTTPURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("public HTTP URL %q: want http(s)://host[:port]", c.PublicHTTPURL))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}
