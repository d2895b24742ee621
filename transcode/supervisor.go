// Package transcode is the only code that starts ffmpeg. It fills the hub's derived tracks: today
// an Opus track beside every AAC track, since WebRTC viewers cannot play AAC. One ffmpeg process
// runs per derived track, started when the track gets its first reader, restarted if it dies, and
// stopped once the track has had no reader for a while or its stream ends.
package transcode

import (
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamfleet/streamfleet/node/hub"
)

// Config configures a Supervisor.
type Config struct {
	// FFmpeg is the ffmpeg binary, a path or a name looked up in PATH.
	FFmpeg string
	// Linger is how long a transcoder keeps running after its last reader left.
	Linger time.Duration
	// RestartDelay is the pause before a transcoder that died is started again.
	RestartDelay time.Duration
	// OpusBitrate is the bitrate of the Opus tracks made, in bits per second.
	OpusBitrate int
}

// DefaultConfig returns ffmpeg from PATH, 10 s of linger, 1 s restart delay and 64 kbps Opus.
func DefaultConfig() Config {
	return Config{FFmpeg: "ffmpeg", Linger: 10 * time.Second, RestartDelay: time.Second, OpusBitrate: 64000}
}

// Validate checks the configuration. A missing ffmpeg is not an error here: the node runs without
// it, and each transcoder that cannot start says so.
func (c Config) Validate() error {
	var errs []error
	if c.FFmpeg == "" {
		errs = append(errs, errors.New("transcode: ffmpeg path is empty"))
	}
	if c.Linger < 0 || c.RestartDelay <= 0 {
		errs = append(errs, errors.New("transcode: linger must not be negative and restart delay must be positive"))
	}
	if c.OpusBitrate < 6000 || c.OpusBitrate > 510000 {
		errs = append(errs, fmt.Errorf("transcode: opus bitrate %d outside 6000–510000", c.OpusBitrate))
	}
	return errors.Join(errs...)
}

// Stats are a supervisor's counters.
type Stats struct {
	Running  atomic.Int64  // transcoders running now
	Started  atomic.Uint64 // ffmpeg processes started
	Failures atomic.Uint64 // ffmpeg processes that exited while still needed, or could not start
	Packets  atomic.Uint64 // packets written to derived tracks
}

// Supervisor runs the transcoders of a node.
type Supervisor struct {
	cfg  Config
	log  *slog.Logger
	done chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	jobs   map[*hub.Track]*aacToOpus
	closed bool

	stats Stats
}

// New validates cfg and returns a supervisor with no transcoder running.
func New(cfg Config, log *slog.Logger) (*Supervisor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := exec.LookPath(cfg.FFmpeg); err != nil {
		log.Warn("ffmpeg not found: AAC inputs will play without audio over WebRTC", "ffmpeg", cfg.FFmpeg, "err", err)
	}
	return &Supervisor{cfg: cfg, log: log, done: make(chan struct{}), jobs: map[*hub.Track]*aacToOpus{}}, nil
}

// Stats returns the supervisor's counters.
func (s *Supervisor) Stats() *Stats { return &s.stats }

// Demand starts the transcoder of a derived track unless it runs already. It is the hub's
// OnDerivedDemand callback: it never blocks.
func (s *Supervisor) Demand(t *hub.Track) {
	if t.Source() == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if _, ok := s.jobs[t]; ok {
		return
	}
	j := newAACToOpus(s, t)
	s.jobs[t] = j
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.stats.Running.Add(1)
		j.run()
		s.stats.Running.Add(-1)
		s.mu.Lock()
		delete(s.jobs, t)
		s.mu.Unlock()
		// A reader may have arrived while the job was stopping: start again for it.
		if t.ReaderCount() > 0 && !t.Stream().Ended() {
			s.Demand(t)
		}
	}()
}

// Close stops every transcoder and waits for them and their ffmpeg processes.
func (s *Supervisor) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	s.wg.Wait()
}
