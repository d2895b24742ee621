package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenCommand(t *testing.T) {
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := tokenCommand(args, &out, &errOut)
		return strings.TrimSpace(out.String()), err
	}
	secret := "cli-secret-0123456789-abcdefghijklmnopq"
	tok, err := run("mint", "--key", secret, "--stream", "live/x", "--action", "publish", "--ttl", "10m", "--sub", "alice")
	if err != nil || strings.Count(tok, ".") != 2 {
		t.Fatalf("mint: %q %v", tok, err)
	}
	if out, err := run("verify", "--key", secret, "--stream", "live/x", "--action", "publish", tok); err != nil || !strings.Contains(out, `valid: publish live/x`) || !strings.Contains(out, `"alice"`) {
		t.Fatalf("verify: %q %v", out, err)
	}
	if _, err := run("verify", "--key", secret, "--stream", "live/y", "--action", "publish", tok); err == nil || strings.Contains(err.Error(), tok) {
		t.Fatalf("verify of another stream: %v", err)
	}

	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "p.pem")
	if _, err := run("keygen", "--out", priv, "--pub", pub); err != nil {
		t.Fatal(err)
	}
	tok, err = run("mint", "--key-file", priv, "--stream", "live/*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run("verify", "--key-file", pub, "--stream", "live/any", tok); err != nil {
		t.Fatalf("ES256 verify: %v", err)
	}
	if _, err := run("mint", "--key-file", pub, "--stream", "live/x"); err == nil {
		t.Fatal("minted with a public key")
	}
	for _, bad := range [][]string{
		{"mint", "--stream", "live/x"}, // no key
		{"mint", "--key", "short", "--stream", "live/x"},
		{"mint", "--key", secret, "--stream", "live//x"},
		{"mint", "--key", secret, "--stream", "live/x", "--action", "admin"},
		{"mint", "--key", secret, "--stream", "live/x", "--ttl", "0s"},
		{"mint", "--key", secret, "--stream", "live/x", "--ttl", "500ms"},
		{"frobnicate"},
	} {
		if _, err := run(bad...); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
