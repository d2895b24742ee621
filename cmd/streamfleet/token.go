package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/streamfleet/streamfleet/internal/token"
)

// runToken is `streamfleet token mint|verify|keygen`: publish/play tokens from the command line.
func runToken(_ context.Context, args []string) error {
	return tokenCommand(args, os.Stdout, os.Stderr)
}

func tokenCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: streamfleet token mint|verify|keygen [flags]")
		return flag.ErrHelp
	}
	switch args[0] {
	case "mint":
		return tokenMint(args[1:], stdout, stderr)
	case "verify":
		return tokenVerify(args[1:], stdout, stderr)
	case "keygen":
		return tokenKeygen(args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown token command %q (want mint, verify or keygen)", args[0])
}

// keyFlags binds --key and --key-file; load returns the key they name.
func keyFlags(fs *flag.FlagSet) (load func() (token.Key, error)) {
	var secret, file string
	fs.StringVar(&secret, "key", "", "HS256 `secret` (at least 32 bytes; default $STREAMFLEET_TOKEN_KEY)")
	fs.StringVar(&file, "key-file", "", "ES256 PEM `file`: a private key to mint, a public or private key to verify")
	return func() (token.Key, error) {
		if secret == "" {
			secret = os.Getenv("STREAMFLEET_TOKEN_KEY")
		}
		switch {
		case secret != "" && file != "":
			return token.Key{}, errors.New("give --key or --key-file, not both")
		case file != "":
			data, err := os.ReadFile(file)
			if err != nil {
				return token.Key{}, fmt.Errorf("read key: %w", err)
			}
			return token.ParseES256PEM(data)
		case secret != "":
			return token.NewHS256Key([]byte(secret))
		}
		return token.Key{}, errors.New("a key is required: --key (HS256) or --key-file (ES256)")
	}
}

func tokenMint(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token mint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := keyFlags(fs)
	var req token.MintRequest
	var ttl time.Duration
	fs.StringVar(&req.Stream, "stream", "", "stream name, prefix pattern (live/*) or * (required)")
	fs.StringVar(&req.Action, "action", "play", "publish or play")
	fs.DurationVar(&ttl, "ttl", time.Hour, "lifetime of the token")
	fs.StringVar(&req.Subject, "sub", "", "user the token is for (optional)")
	asJSON := fs.Bool("json", false, "print the whole answer (token, expiry, jti) as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if ttl <= 0 {
		return errors.New("--ttl must be positive")
	}
	key, err := load()
	if err != nil {
		return err
	}
	m, err := token.NewMinter(key, token.MintPolicy{DefaultTTL: ttl, MaxTTL: ttl})
	if err != nil {
		return err
	}
	resp, err := m.Mint(req)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(resp)
	}
	_, err = fmt.Fprintln(stdout, resp.Token)
	return err
}

func tokenVerify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := keyFlags(fs)
	stream := fs.String("stream", "", "the stream the token must cover (required)")
	action := fs.String("action", "play", "the action it must grant: publish or play")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: streamfleet token verify --key ... --stream NAME [--action play] TOKEN")
	}
	key, err := load()
	if err != nil {
		return err
	}
	a, err := token.ParseAction(*action)
	if err != nil {
		return err
	}
	c, err := token.Verify(fs.Arg(0), []token.Key{key}, *stream, a, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "valid: %s %s until %s (sub %q, jti %q)\n", c.Action, c.Stream, c.ExpiresAt.UTC().Format(time.RFC3339), c.Subject, c.ID)
	return err
}

func tokenKeygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	priv := fs.String("out", "token-key.pem", "`file` for the ES256 private key (minting; keep it secret)")
	pub := fs.String("pub", "token-pub.pem", "`file` for the public key (the nodes' --token-pubkey)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("marshal key: %w", err)
	}
	tk, err := token.NewES256Key(k)
	if err != nil {
		return err
	}
	pubPEM, err := tk.PublicPEM()
	if err != nil {
		return err
	}
	if err := os.WriteFile(*priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write private key: %w", err)
	}
	if err := os.WriteFile(*pub, pubPEM, 0o644); err != nil {
		return fmt.Errorf("write public key: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "wrote %s (private, for minting) and %s (public, for --token-pubkey)\n", *priv, *pub)
	return err
}
