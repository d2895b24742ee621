package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/chromedp/chromedp"
)

// Page is one tab. Use it from one goroutine at a time.
type Page struct {
	b  *Browser
	id int

	// ctx is chromedp's handle on the tab.
	ctx    context.Context
	cancel context.CancelFunc

	consoleDone chan struct{} // closed when forwardConsole's goroutine ends; nil if none
	closeOnce   sync.Once
}

// ID numbers the tabs of a browser from 1, as they appear in log lines.
func (p *Page) ID() int { return p.id }

// Navigate loads url in the tab and waits for the load event.
func (p *Page) Navigate(url string) error {
	ctx, cancel := context.WithTimeout(p.ctx, evalTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		return fmt.Errorf("navigate to %s: %w", url, err)
	}
	return nil
}

// Eval evaluates the JavaScript expression js in the page, awaits it if it is
// a promise, and decodes its JSON value into out (which may be nil to drop
// the value). An exception, thrown or from a rejected promise, is an error.
// An undefined result decodes as null.
func (p *Page) Eval(js string, out any) error {
	return p.eval(evalTimeout, js, out)
}

func (p *Page) eval(timeout time.Duration, js string, out any) error {
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err != nil {
		return fmt.Errorf("eval %s: %w", abbrev(js), err)
	}
	if out == nil {
		return nil
	}
	if len(raw) == 0 {
		raw = []byte("null")
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("eval %s: decode %s: %w", abbrev(js), abbrev(string(raw)), err)
	}
	return nil
}

// Screenshot returns a PNG of the whole page, for a test to save when it
// fails.
func (p *Page) Screenshot() ([]byte, error) {
	ctx, cancel := context.WithTimeout(p.ctx, evalTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return nil, fmt.Errorf("screenshot: %w", err)
	}
	return png, nil
}

// WaitFor polls the JavaScript expression js every 100 ms until it is truthy,
// and fails after timeout. While the expression throws (say, the page has not
// defined a global yet), polling goes on; the last exception is in the error.
// Polling runs from Go, so it survives navigations.
func (p *Page) WaitFor(js string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	expr := "!!(" + js + "\n)"
	var lastErr error
	for {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			if lastErr != nil {
				return fmt.Errorf("wait for %s: not true after %v (last error: %w)", abbrev(js), timeout, lastErr)
			}
			return fmt.Errorf("wait for %s: not true after %v", abbrev(js), timeout)
		}
		var ok bool
		err := p.eval(remaining, expr, &ok)
		if err == nil && ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-p.ctx.Done():
			return fmt.Errorf("wait for %s: tab closed: %w", abbrev(js), p.ctx.Err())
		case <-time.After(min(pollInterval, time.Until(deadline))):
		}
	}
}

// Close closes the tab. It is safe to call more than once; Browser.Close
// closes the tabs left open.
func (p *Page) Close() {
	p.closeOnce.Do(func() {
		p.cancel()
		if p.consoleDone != nil {
			<-p.consoleDone
		}
		p.b.forget(p)
	})
}

// forwardConsole sends the tab's console messages and uncaught exceptions to
// the browser's logf until the tab closes.
func (p *Page) forwardConsole() {
	messages := chromedp.Console(p.ctx)
	p.consoleDone = make(chan struct{})
	go func() {
		defer close(p.consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.URL != "" {
				p.b.logf("browser tab %d: %s (%s:%d)", p.id, m, m.URL, m.Line+1)
			} else {
				p.b.logf("browser tab %d: %s", p.id, m)
			}
		}
	}()
}

// abbrev shortens s for error messages.
func abbrev(s string) string {
	const limit = 120
	if len(s) <= limit {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q…", s[:limit])
}
