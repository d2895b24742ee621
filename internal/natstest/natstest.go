// Package natstest runs embedded NATS servers with JetStream for tests: one server, or a cluster
// of three in one process, on 127.0.0.1 with free ports and data in the test's temp dir.
package natstest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Start runs one JetStream server and shuts it down when the test ends.
func Start(t testing.TB) *server.Server {
	t.Helper()
	s := run(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	return s
}

// StartCluster runs a cluster of three JetStream servers; each is shut down when the test ends.
func StartCluster(t testing.TB) []*server.Server {
	t.Helper()
	ports := freePorts(t, 3)
	routes := make([]string, 3)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	var out []*server.Server
	for i := range 3 {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1, JetStream: true,
			StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "streamfleet-test", Host: "127.0.0.1", Port: ports[i]},
		}
		opts.Routes = server.RoutesFromStr(joinExcept(routes, i))
		out = append(out, run(t, opts))
	}
	return out
}

func joinExcept(list []string, skip int) string {
	s := ""
	for i, v := range list {
		if i == skip {
			continue
		}
		if s != "" {
			s += ","
		}
		s += v
	}
	return s
}

func run(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}
