package browser_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/browser"
)

// serve starts an HTTP server on 127.0.0.1 that answers every GET with page.
func serve(t *testing.T, page string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

const evalPage = `<!doctype html>
<title>eval</title>
<link rel="icon" href="data:,">
<script>
window.answer = 42;
window.later = false;
setTimeout(() => { window.later = true; }, 300);
</script>`

func TestEval(t *testing.T) {
	url := serve(t, evalPage)
	b := browser.New(t.Context(), t)
	p, err := b.Open(url)
	if err != nil {
		t.Fatal(err)
	}

	var n int
	if err := p.Eval(`window.answer`, &n); err != nil || n != 42 {
		t.Errorf("window.answer = %d, %v; want 42", n, err)
	}

	var s string
	if err := p.Eval(`new Promise(r => setTimeout(() => r(document.title + "!"), 50))`, &s); err != nil || s != "eval!" {
		t.Errorf("promise = %q, %v; want %q", s, err, "eval!")
	}

	var obj struct {
		Host string   `json:"host"`
		List []int    `json:"list"`
		Nil  *float64 `json:"nil"`
	}
	if err := p.Eval(`({host: location.hostname, list: [1, 2, 3], nil: null})`, &obj); err != nil {
		t.Errorf("object: %v", err)
	} else if obj.Host != "127.0.0.1" || !slices.Equal(obj.List, []int{1, 2, 3}) || obj.Nil != nil {
		t.Errorf("object = %+v", obj)
	}

	var undef *int
	if err := p.Eval(`undefined`, &undef); err != nil || undef != nil {
		t.Errorf("undefined = %v, %v; want nil, nil", undef, err)
	}
	if err := p.Eval(`void 0`, nil); err != nil {
		t.Errorf("eval with nil out: %v", err)
	}

	if err := p.Eval(`Promise.reject(new Error("boom"))`, nil); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("rejected promise: err = %v, want one mentioning boom", err)
	}
	if err := p.Eval(`(() => { throw new TypeError("bad thing") })()`, nil); err == nil || !strings.Contains(err.Error(), "bad thing") {
		t.Errorf("throw: err = %v, want one mentioning the exception", err)
	}

	if err := p.WaitFor(`window.later`, 5*time.Second); err != nil {
		t.Errorf("WaitFor(window.later): %v", err)
	}
	start := time.Now()
	err = p.WaitFor(`window.never.defined`, 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "never") {
		t.Errorf("WaitFor(undefined global) = %v, want a timeout naming the expression", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 5*time.Second {
		t.Errorf("WaitFor with a 500ms timeout took %v", d)
	}

	// A second tab is independent of the first.
	p2, err := b.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Eval(`window.answer = 7`, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Eval(`window.answer`, &n); err != nil || n != 42 {
		t.Errorf("first tab's window.answer = %d, %v after writing the second's; want 42", n, err)
	}
	p2.Close()
	p2.Close() // twice is fine
	if err := p.Eval(`1`, &n); err != nil {
		t.Errorf("first tab after closing the second: %v", err)
	}
}

const cameraPage = `<!doctype html>
<title>camera</title>
<link rel="icon" href="data:,">
<video autoplay muted playsinline></video>
<script>
window.gum = null;
navigator.mediaDevices.getUserMedia({video: {width: 640, height: 360}, audio: true})
  .then(stream => {
    const v = document.querySelector("video");
    v.srcObject = stream;
    window.gum = {
      video: stream.getVideoTracks().length,
      audio: stream.getAudioTracks().length,
      label: stream.getVideoTracks()[0].label,
      state: stream.getVideoTracks()[0].readyState,
    };
  })
  .catch(err => { window.gum = {error: String(err)}; });
</script>`

func TestFakeCamera(t *testing.T) {
	url := serve(t, cameraPage)
	b := browser.New(t.Context(), t)
	p, err := b.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(`window.gum`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var gum struct {
		Video, Audio int
		Label, State string
		Error        string
	}
	if err := p.Eval(`window.gum`, &gum); err != nil {
		t.Fatal(err)
	}
	if gum.Error != "" {
		t.Fatalf("getUserMedia on %s: %s", url, gum.Error)
	}
	if gum.Video != 1 || gum.Audio != 1 || gum.State != "live" {
		t.Errorf("getUserMedia gave %+v, want one live video and one audio track", gum)
	}
	// The fake camera really produces frames.
	if err := p.WaitFor(`(() => { const v = document.querySelector("video"); return v.videoWidth === 640 && v.currentTime > 0.2; })()`, 10*time.Second); err != nil {
		t.Error(err)
	}
}

func TestCommandLine(t *testing.T) {
	b := browser.New(t.Context(), t)
	args, err := b.CommandLine()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"--headless=new",
		"--disable-quic",
		"--use-fake-device-for-media-stream",
		"--use-fake-ui-for-media-stream",
		"--allow-loopback-in-peer-connection",
		"--autoplay-policy=no-user-gesture-required",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("command line %q lacks %s", args, want)
		}
	}
	var dataDir string
	for _, a := range args {
		if d, ok := strings.CutPrefix(a, "--user-data-dir="); ok {
			dataDir = d
		}
	}
	if dataDir == "" || !strings.HasPrefix(dataDir, filepath.Clean(os.TempDir())) {
		t.Fatalf("user data dir %q is not a temporary directory", dataDir)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("user data dir %s still there after Close: %v", dataDir, err)
	}
	if _, err := b.Open("about:blank"); err == nil {
		t.Error("Open after Close succeeded")
	}
}

func TestFindChromium(t *testing.T) {
	t.Setenv("CHROMIUM", filepath.Join(t.TempDir(), "no-such-chromium"))
	if _, err := browser.FindChromium(); !errors.Is(err, browser.ErrNoChromium) {
		t.Errorf("FindChromium with a bad $CHROMIUM = %v, want ErrNoChromium", err)
	}
	t.Setenv("CHROMIUM", "")
	path, err := browser.FindChromium()
	if err != nil {
		t.Fatalf("FindChromium: %v (these tests need Debian's chromium)", err)
	}
	if !filepath.IsAbs(path) {
		t.Errorf("FindChromium = %q, want an absolute path", path)
	}
}

func TestConsole(t *testing.T) {
	path, err := browser.FindChromium()
	if err != nil {
		t.Fatalf("%v (this test needs a real Chromium and never skips)", err)
	}
	url := serve(t, `<!doctype html><link rel="icon" href="data:,"><script>
		console.log("hello", 1 + 1);
		setTimeout(() => { throw new Error("uncaught here"); }, 10);
	</script>`)
	lines := make(chan string, 100)
	b, err := browser.Start(t.Context(), browser.Config{
		ExecPath: path,
		Logf: func(format string, args ...any) {
			lines <- fmt.Sprintf(format, args...)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Open(url); err != nil {
		t.Fatal(err)
	}
	var got []string
	timeout := time.After(5 * time.Second)
	for !slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "uncaught here") }) {
		select {
		case l := <-lines:
			got = append(got, l)
		case <-timeout:
			t.Fatalf("console lines %q lack the uncaught exception", got)
		}
	}
	if !slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "log: hello 2") }) {
		t.Errorf("console lines %q lack the console.log call", got)
	}
}
