// Package browser drives a headless Chromium for tests: it starts the browser
// with the flags that make WebRTC work on loopback with a fake camera and
// microphone, opens tabs, evaluates JavaScript in them and waits for
// conditions.
//
// Tests use New, which fails the test when Chromium is missing: the project's
// browser tests never skip. Code without a testing.TB uses Start.
package browser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"
)

// ErrNoChromium means that no Chromium binary was found.
var ErrNoChromium = errors.New("chromium not found")

var errBrowserClosed = errors.New("open tab: browser is closed")

// Default limits. A test can wait longer with WaitFor.
const (
	startTimeout = 30 * time.Second // launch and first tab
	evalTimeout  = 30 * time.Second // one navigation or one evaluation
	closeTimeout = 5 * time.Second  // graceful browser close
	pollInterval = 100 * time.Millisecond
)

// chromiumPaths are where Debian's chromium package puts the binary.
var chromiumPaths = []string{"/usr/lib/chromium/chromium", "/usr/bin/chromium"}

// FindChromium returns the Chromium binary to run: $CHROMIUM when set (and
// then only that), else the first of /usr/lib/chromium/chromium and
// /usr/bin/chromium that is an executable file.
func FindChromium() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%w: $CHROMIUM=%s: %w", ErrNoChromium, p, err)
		}
		return p, nil
	}
	for _, p := range chromiumPaths {
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: looked at $CHROMIUM, %s and %s; install Debian's chromium package or set $CHROMIUM",
		ErrNoChromium, chromiumPaths[0], chromiumPaths[1])
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// Config configures Start. The zero value is valid.
type Config struct {
	// ExecPath is the Chromium binary; empty means FindChromium.
	ExecPath string
	// Logf, if set, receives every page's console messages and uncaught
	// exceptions, one call per message.
	Logf func(format string, args ...any)
	// Output, if set, receives Chromium's own stdout and stderr.
	Output io.Writer
	// Flags are extra command-line switches (name without "--"; a string
	// value gives --name=value, true gives --name). They are applied after
	// the defaults, so they can override them.
	Flags map[string]any
}

// Flags returns the command-line switches that Start passes to Chromium, on
// top of the --user-data-dir (a fresh temporary directory per browser) and
// --remote-debugging-pipe that chromedp adds.
func Flags() map[string]any {
	return map[string]any{
		"headless":                          "new",
		"no-sandbox":                        true,
		"disable-gpu":                       true,
		"use-fake-device-for-media-stream":  true,
		"use-fake-ui-for-media-stream":      true,
		"allow-loopback-in-peer-connection": true,
		"autoplay-policy":                   "no-user-gesture-required",
		"disable-background-networking":     true,
		"disable-component-update":          true,
		"disable-sync":                      true,
		"no-first-run":                      true,
		"no-default-browser-check":          true,
		"disable-dev-shm-usage":             true,
		"disable-quic":                      true,
		"mute-audio":                        true,
		"hide-scrollbars":                   true,
		// Keep timers and media running in every tab: tests publish in one
		// tab and play in another, and neither is ever in front.
		"disable-background-timer-throttling":    true,
		"disable-backgrounding-occluded-windows": true,
		"disable-renderer-backgrounding":         true,
		// Offer plain host candidates instead of mDNS names, so a server
		// sees real loopback addresses.
		"disable-features": "WebRtcHideLocalIpsWithMdns",
		// Browser.getBrowserCommandLine answers only with this switch.
		"enable-automation": true,
	}
}

// Browser is one running Chromium process. Its methods are safe for
// concurrent use; each Page is for one goroutine at a time.
type Browser struct {
	logf func(format string, args ...any)

	// ctx is chromedp's handle on the browser: every tab is a child of it.
	ctx           context.Context
	cancelBrowser context.CancelFunc
	cancelAlloc   context.CancelFunc

	mu     sync.Mutex
	pages  map[*Page]struct{}
	nextID int
	closed bool
}

// New starts a browser for a test and closes it when the test ends. If
// Chromium is missing or does not start, it fails the test with t.Fatalf:
// browser tests never skip. ctx bounds only the start; the browser lives until
// the test's cleanup (so t.Context() is fine to pass). Console messages of the
// pages go to t.Logf.
func New(ctx context.Context, t testing.TB) *Browser {
	t.Helper()
	path, err := FindChromium()
	if err != nil {
		t.Fatalf("browser: %v (this test needs a real Chromium and never skips)", err)
	}
	b, err := Start(ctx, Config{
		ExecPath: path,
		Logf:     t.Logf,
	})
	if err != nil {
		t.Fatalf("browser: start %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("browser: close: %v", err)
		}
	})
	return b
}

// Start launches Chromium headless with Flags and cfg.Flags and waits until
// it is ready. ctx bounds only the start; call Close to stop the browser.
func Start(ctx context.Context, cfg Config) (*Browser, error) {
	path := cfg.ExecPath
	if path == "" {
		var err error
		if path, err = FindChromium(); err != nil {
			return nil, err
		}
	} else if err := checkExecutable(path); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoChromium, err)
	}

	flags := Flags()
	maps.Copy(flags, cfg.Flags)
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(path)}
	for _, name := range slices.Sorted(maps.Keys(flags)) {
		opts = append(opts, chromedp.Flag(name, flags[name]))
	}
	if cfg.Output != nil {
		opts = append(opts, chromedp.CombinedOutput(cfg.Output))
	}

	// The browser outlives ctx: chromedp ties a browser to the context of
	// its first action, so that context must last until Close.
	life := context.WithoutCancel(ctx)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	b := &Browser{
		logf:          cfg.Logf,
		ctx:           browserCtx,
		cancelBrowser: cancelBrowser,
		cancelAlloc:   cancelAlloc,
		pages:         make(map[*Page]struct{}),
	}

	started := make(chan error, 1)
	go func() { started <- chromedp.Do(browserCtx) }()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-started:
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = fmt.Errorf("no answer after %v", startTimeout)
	}
	if err != nil {
		cancelBrowser()
		cancelAlloc()
		return nil, fmt.Errorf("start chromium %s: %w", path, err)
	}
	return b, nil
}

// CommandLine returns the command line the browser runs with.
func (b *Browser) CommandLine() ([]string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, evalTimeout)
	defer cancel()
	res, err := chromedp.CallBrowser(ctx, cdpbrowser.GetBrowserCommandLine, cdp.Empty{})
	if err != nil {
		return nil, fmt.Errorf("get browser command line: %w", err)
	}
	return res.Arguments, nil
}

// Open opens url in a new tab (its own window, so it is never hidden behind
// another tab) and waits for the page to load.
func (b *Browser) Open(url string) (*Page, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errBrowserClosed
	}
	b.nextID++
	id := b.nextID
	b.mu.Unlock()

	tabCtx, cancel := chromedp.NewContext(b.ctx)
	p := &Page{b: b, id: id, ctx: tabCtx, cancel: cancel}
	// The first action on tabCtx creates the tab, so it must run on tabCtx
	// itself: chromedp ties the tab's life to that context.
	if err := chromedp.Do(tabCtx); err != nil {
		cancel()
		return nil, fmt.Errorf("open tab: %w", err)
	}
	if b.logf != nil {
		p.forwardConsole()
	}

	b.mu.Lock()
	closed := b.closed
	if !closed {
		b.pages[p] = struct{}{}
	}
	b.mu.Unlock()
	if closed {
		p.Close()
		return nil, errBrowserClosed
	}

	if err := p.Navigate(url); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Close closes every tab and stops the browser, waiting for the process to
// exit and its temporary profile to be removed. It is safe to call more than
// once.
func (b *Browser) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	pages := make([]*Page, 0, len(b.pages))
	for p := range b.pages {
		pages = append(pages, p)
	}
	b.mu.Unlock()

	for _, p := range pages {
		p.Close()
	}
	ctx, cancel := context.WithTimeout(b.ctx, closeTimeout)
	err := chromedp.Cancel(ctx)
	cancel()
	b.cancelBrowser()
	b.cancelAlloc() // waits for the process and removes the profile
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close chromium: %w", err)
	}
	return nil
}

func (b *Browser) forget(p *Page) {
	b.mu.Lock()
	delete(b.pages, p)
	b.mu.Unlock()
}
