package streammanager

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/streamfleet/streamfleet/internal/contract"
	"github.com/streamfleet/streamfleet/internal/token"
)

// Config is a stream manager's configuration.
type Config struct {
	// ID names the manager in logs, in the leader lease and in /api/v1/cluster.
	ID string
	// HTTPAddr serves the REST API, WHIP/WHEP redirects, pages and the dashboard.
	HTTPAddr string
	// NATSURL is the NATS server (or comma-separated servers).
	NATSURL string
	// NATSCredsFile, NATSTLSCA, NATSTLSCert and NATSTLSKey authenticate to NATS.
	NATSCredsFile, NATSTLSCA, NATSTLSCert, NATSTLSKey string
	// InProcess, if set, connects to an embedded NATS server without a socket (dev).
	InProcess nats.InProcessConnProvider
	// Replicas is the replication of the KV buckets (3 in a 3-server NATS cluster).
	Replicas int
	// APIKeys are the keys admin calls must present (Authorization: Bearer <key> or X-API-Key).
	// None: admin calls are refused.
	APIKeys []string
	// TokenSecret is the HS256 secret (at least 32 bytes) that POST /api/v1/tokens signs with
	// (--token-key, as the nodes' --token-key that verifies). Never logged.
	TokenSecret string
	// TokenSigningKeyFile is a PEM file of an ES256 private key that POST /api/v1/tokens signs
	// with instead (--token-signing-key); nodes verify with its public key (--token-pubkey).
	TokenSigningKeyFile string
	// TokenMaxTTL caps the lifetime of a minted token (24h if zero); TokenDefaultTTL is the
	// lifetime of one whose request names none (1h if zero).
	TokenMaxTTL, TokenDefaultTTL time.Duration
	// RegionMap maps client networks to regions, for lookups without ?region=.
	RegionMap []RegionPrefix
	// FailAfter is how long after its last heartbeat a node is failed (default contract.HeartbeatTTL).
	FailAfter time.Duration
	// StartTimeout bounds the wait for NATS and the buckets in Start.
	StartTimeout time.Duration
	// ShutdownTimeout bounds Close.
	ShutdownTimeout time.Duration
}

// RegionPrefix maps a client network to a region.
type RegionPrefix struct {
	Prefix netip.Prefix
	Region string
}

// ParseRegionMap reads "cidr=region" items, comma separated (e.g. "10.1.0.0/16=eu,10.2.0.0/16=us").
func ParseRegionMap(s string) ([]RegionPrefix, error) {
	var out []RegionPrefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		cidr, region, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("region map item %q: want cidr=region", item)
		}
		p, err := netip.ParsePrefix(strings.TrimSpace(cidr))
		if err != nil {
			return nil, fmt.Errorf("region map item %q: %w", item, err)
		}
		region = strings.TrimSpace(region)
		if !validRegion(region) {
			return nil, fmt.Errorf("region map item %q: bad region", item)
		}
		out = append(out, RegionPrefix{Prefix: p.Masked(), Region: region})
	}
	return out, nil
}

// validRegion: 1–64 characters of [A-Za-z0-9_-].
func validRegion(r string) bool { return contract.CheckID(r) == nil }

// DefaultConfig returns a manager on :8090 talking to a local NATS server.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	id := "manager-" + sanitizeID(host)
	return Config{
		ID:              id,
		HTTPAddr:        ":8090",
		NATSURL:         nats.DefaultURL,
		Replicas:        1,
		FailAfter:       contract.HeartbeatTTL,
		StartTimeout:    30 * time.Second,
		ShutdownTimeout: 5 * time.Second,
	}
}

func sanitizeID(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) > 48 {
		b = b[:48]
	}
	if len(b) == 0 {
		return "1"
	}
	return string(b)
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if err := contract.CheckID(c.ID); err != nil {
		errs = append(errs, fmt.Errorf("manager id: %w", err))
	}
	if _, err := net.ResolveTCPAddr("tcp", c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http address %q: %w", c.HTTPAddr, err))
	}
	if c.NATSURL == "" && c.InProcess == nil {
		errs = append(errs, errors.New("no NATS URL"))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: want 1 to 5", c.Replicas))
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		errs = append(errs, errors.New("nats TLS certificate and key go together"))
	}
	for _, k := range c.APIKeys {
		if len(k) < 16 {
			errs = append(errs, errors.New("an API key is shorter than 16 characters"))
			break
		}
	}
	if c.TokenSecret != "" && c.TokenSigningKeyFile != "" {
		errs = append(errs, errors.New("give a token key (HS256) or a token signing key (ES256), not both"))
	}
	if c.TokenSecret != "" && len(c.TokenSecret) < token.MinSecretBytes {
		errs = append(errs, fmt.Errorf("token key: an HS256 secret needs at least %d bytes", token.MinSecretBytes))
	}
	if c.TokenMaxTTL < 0 || c.TokenDefaultTTL < 0 {
		errs = append(errs, errors.New("token ttls must not be negative"))
	}
	if c.FailAfter < 500*time.Millisecond {
		errs = append(errs, fmt.Errorf("fail-after %v: want at least 500ms", c.FailAfter))
	}
	if c.StartTimeout <= 0 || c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("start and shutdown timeouts must be positive"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// minter builds the token minter of POST /api/v1/tokens from the configured signing key, or nil
// when none is configured.
func (c Config) minter() (*token.Minter, error) {
	var key token.Key
	var err error
	switch {
	case c.TokenSecret != "":
		key, err = token.NewHS256Key([]byte(c.TokenSecret))
	case c.TokenSigningKeyFile != "":
		var data []byte
		if data, err = os.ReadFile(c.TokenSigningKeyFile); err == nil {
			key, err = token.ParseES256PEM(data)
		}
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: token signing key: %w", ErrInvalidConfig, err)
	}
	m, err := token.NewMinter(key, token.MintPolicy{DefaultTTL: c.TokenDefaultTTL, MaxTTL: c.TokenMaxTTL})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return m, nil
}
