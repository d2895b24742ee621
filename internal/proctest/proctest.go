// Package proctest runs streamfleet processes for tests: the binary built once per test package,
// free loopback ports, logs kept and shown when a test fails, SIGTERM at cleanup and SIGKILL on
// demand.
package proctest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build builds the streamfleet binary into a fresh temporary folder and returns its path and a
// function that removes the folder. Call it from TestMain.
func Build() (binary string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "streamfleet-proctest")
	if err != nil {
		return "", nil, err
	}
	binary = filepath.Join(dir, "streamfleet")
	build := exec.Command("go", "build", "-o", binary, "github.com/streamfleet/streamfleet/cmd/streamfleet")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build streamfleet: %w", err)
	}
	return binary, func() { os.RemoveAll(dir) }, nil
}

// Run is for TestMain: it builds the binary into *binary, runs the tests and removes the binary,
// and returns the tests' exit code (1 if the build failed).
func Run(m *testing.M, binary *string) int {
	b, cleanup, err := Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	*binary = b
	return m.Run()
}

// FreeTCP and FreeUDP return an address on 127.0.0.1 whose port was free a moment ago.
func FreeTCP(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// FreeUDP returns a UDP address on 127.0.0.1 whose port was free a moment ago.
func FreeUDP(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// Proc is a running process.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}

	mu  sync.Mutex
	log []string
}

// Start runs binary with args; its stderr and stdout are kept and written to the test log if
// the test fails. At cleanup it gets SIGTERM (SIGKILL after 10 s).
func Start(t testing.TB, name, binary string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, cmd: exec.Command(binary, args...), done: make(chan struct{})}
	out, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = p.cmd.Stderr // one pipe for both
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log = append(p.log, sc.Text())
			p.mu.Unlock()
		}
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.mu.Lock()
			for _, l := range p.log {
				t.Logf("[%s] %s", name, l)
			}
			p.mu.Unlock()
		}
	})
	return p
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// WaitHTTP waits until GET url answers 200, failing the test after timeout or if p exits.
func (p *Proc) WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	p.wait(t, timeout, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

// WaitTCP waits until addr accepts TCP connections.
func (p *Proc) WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	p.wait(t, timeout, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

func (p *Proc) wait(t testing.TB, timeout time.Duration, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		if p.Exited() {
			t.Fatalf("%s exited at start", p.Name)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v: %v", p.Name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitFor polls cond every 20 ms until it holds, failing the test with what after timeout, and
// returns how long it took.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}
