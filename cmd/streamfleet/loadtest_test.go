package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/streamfleet/streamfleet/internal/loadtest"
)

func TestLoadtestPacingFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want float64
	}{
		{nil, loadtest.DefaultPacing},
		{[]string{"--pacing", "0"}, 0},
		{[]string{"--pacing=1.25"}, 1.25},
		{[]string{"--pacing", "4", "--bitrate", "600k"}, 4},
	} {
		cfg, _, err := loadtestFlags(tc.args)
		if err != nil || cfg.Pacing != tc.want {
			t.Errorf("%q: pacing %g, %v; want %g", tc.args, cfg.Pacing, err, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--pacing", "-1"}, "pacing -1"},
		{[]string{"--pacing", "0.5"}, "pacing 0.5"},
		{[]string{"--pacing", "fast"}, "-pacing"},
	} {
		_, _, err := loadtestFlags(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	if _, _, err := loadtestFlags([]string{"--pacing", "-1"}); !errors.Is(err, loadtest.ErrInvalidConfig) {
		t.Errorf("negative pacing: %v, want ErrInvalidConfig", err)
	}
}
