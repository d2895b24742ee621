package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestNodeFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown role", []string{"--role=bogus"}, nil, "unknown role"},
		{"role from env", nil, map[string]string{"STREAMFLEET_ROLE": "bogus"}, "unknown role"},
		{"bad public ip", []string{"--public-ip=not-an-ip"}, nil, "not an IP address"},
		{"bad grace from env", nil, map[string]string{"STREAMFLEET_GRACE": "soon"}, "STREAMFLEET_GRACE"},
		{"bad log level", []string{"--log-level=loud", "--http=127.0.0.1:0", "--ice-udp=127.0.0.1:0"}, nil, "log level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			err := runNode(context.Background(), tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := runNode(context.Background(), []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}

// TestNodeRunsUntilCancelled starts a real node on free ports and stops it with the context, as
// a signal does.
func TestNodeRunsUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := runNode(ctx, []string{"--http=127.0.0.1:0", "--ice-udp=127.0.0.1:0", "--log-level=error"})
	if err != nil {
		t.Fatalf("node: %v", err)
	}
}

func TestDevURLs(t *testing.T) {
	var b bytes.Buffer
	printDevURLs(&b, "http://127.0.0.1:8080", "127.0.0.1:8189")
	for _, want := range []string{"/publish?stream=live/test", "/watch?stream=live/test", "POST http://127.0.0.1:8080/whip/live/test",
		"POST http://127.0.0.1:8080/whep/live/test", "/metrics", "/healthz", "127.0.0.1:8189"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dev output lacks %q", want)
		}
	}
}
