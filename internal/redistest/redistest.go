// Package redistest starts real Redis deployments for integration tests: a single redis-server
// (plain or TLS-only), a three-master Cluster, or a master watched by a Sentinel. Every process is fresh, on free
// loopback ports, without persistence, and stopped when the test ends.
package redistest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/internal/testutil"
)

// Server is a running redis-server.
type Server struct {
	// Addr is its 127.0.0.1:port address.
	Addr string
	cmd  *exec.Cmd
	// tls, when set, is how a client reaches a server started by StartTLS.
	tls *tls.Config
}

// URL returns the redis:// URL of db 0 (rediss:// for a server started by StartTLS).
func (s *Server) URL() string {
	if s.tls != nil {
		return "rediss://" + s.Addr + "/0"
	}
	return "redis://" + s.Addr + "/0"
}

// Client returns a go-redis client of s, closed when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, TLSConfig: s.tls})
	tb.Cleanup(func() { c.Close() })
	return c
}

// Stop ends the server now (to test what happens when Redis goes away).
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd.Process = nil
	}
}

// PID returns the process id of the running redis-server, so a test can send it signals of its
// own (SIGSTOP pauses Redis with every TCP connection left open, which Stop cannot show); 0 once
// Stop has ended it.
func (s *Server) PID() int {
	if s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// readyMarker is the log line of a redis-server that accepts connections.
const readyMarker = "Ready to accept connections"

// startTimeout bounds how long one process may take to log that it is ready.
const startTimeout = 10 * time.Second

// Start runs redis-server for the test. Without the binary the test is skipped, unless CI is
// set: CI must have it.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := need(tb, "redis-server")
	dir := tb.TempDir()
	s := launch(tb, bin, readyMarker, func(port string) []string {
		return []string{"--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir}
	})
	if err := ping(s.Addr, nil); err != nil {
		tb.Fatalf("redis-server on %s: %v", s.Addr, err)
	}
	return s
}

// StartTLS runs a redis-server that speaks only TLS (rediss://; the plain port is off), with the
// server certificate and key of certFile and keyFile. Clients are not asked for a certificate.
// caPEM is the CA that signed the certificate: Client trusts it, the code under test must be
// given it. Debian's redis-server is built with TLS; a build without it fails the test.
func StartTLS(tb testing.TB, certFile, keyFile string, caPEM []byte) *Server {
	tb.Helper()
	bin := need(tb, "redis-server")
	dir := tb.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		tb.Fatalf("write CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		tb.Fatal("StartTLS: caPEM holds no certificate")
	}
	s := launch(tb, bin, readyMarker, func(port string) []string {
		return []string{"--bind", "127.0.0.1", "--port", "0", "--tls-port", port,
			"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
			"--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", dir}
	})
	s.tls = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if err := ping(s.Addr, s.tls); err != nil {
		tb.Fatalf("redis-server (TLS) on %s: %v", s.Addr, err)
	}
	return s
}

// Cluster is a running Redis Cluster of three masters without replicas, the slots split evenly.
type Cluster struct {
	// Addrs are the masters' 127.0.0.1:port addresses.
	Addrs []string
	nodes []*Server
}

// Client returns a go-redis cluster client of c, closed when the test ends.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	tb.Cleanup(func() { cc.Close() })
	return cc
}

// clusterStateTimeout bounds the wait for every node to report cluster_state:ok.
const clusterStateTimeout = 20 * time.Second

// StartCluster runs three cluster-enabled redis-servers for the test and joins them with
// `redis-cli --cluster create`. It returns once every node reports cluster_state:ok. Without
// redis-server or redis-cli the test is skipped, unless CI is set.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	bin := need(tb, "redis-server")
	cli := need(tb, "redis-cli")
	dir := tb.TempDir()
	c := &Cluster{}
	for range 3 {
		n := launch(tb, bin, readyMarker, func(port string) []string {
			// The cluster bus defaults to port+10000, past 65535 for most ephemeral ports.
			bus, err := FreePort()
			if err != nil {
				tb.Fatalf("find a free port for the cluster bus: %v", err)
			}
			return []string{"--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir,
				"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
				"--cluster-config-file", filepath.Join(dir, "nodes-"+port+".conf"),
				"--cluster-node-timeout", "2000"}
		})
		c.nodes = append(c.nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}

	create, cancel := context.WithTimeout(context.Background(), clusterStateTimeout)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, c.Addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(create, cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}

	deadline := time.Now().Add(clusterStateTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for _, addr := range c.Addrs {
		node := redis.NewClient(&redis.Options{Addr: addr})
		defer node.Close()
		testutil.Eventually(tb, time.Until(deadline), func() error {
			info, err := node.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				return nil
			}
			return fmt.Errorf("cluster node %s not ok: %v\n%s", addr, err, info)
		})
	}
	return c
}

// Sentinel is a running redis-server master watched by one Sentinel.
type Sentinel struct {
	// Addrs are the Sentinels' 127.0.0.1:port addresses (one).
	Addrs []string
	// MasterName is the name the Sentinel knows the master by: "mymaster".
	MasterName string
	// Master is the monitored redis-server.
	Master *Server
}

// Client returns a go-redis client that finds the master through the Sentinel (what
// redis.NewUniversalClient builds for Addrs and MasterName), closed when the test ends.
func (s *Sentinel) Client(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: s.Addrs, MasterName: s.MasterName})
	tb.Cleanup(func() { c.Close() })
	return c
}

// sentinelTimeout bounds the wait for the Sentinel to name the master.
const sentinelTimeout = 10 * time.Second

// StartSentinel runs a redis-server master and one Sentinel (`redis-server sentinel.conf
// --sentinel`, quorum 1) monitoring it as "mymaster", and returns once the Sentinel names the
// master. Without redis-server the test is skipped, unless CI is set.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	const name = "mymaster"
	master := Start(tb)
	bin := need(tb, "redis-server")
	_, masterPort, _ := net.SplitHostPort(master.Addr)
	dir := tb.TempDir()
	sn := launch(tb, bin, "+monitor master "+name, func(port string) []string {
		// The Sentinel rewrites its configuration file: it must be writable.
		conf := filepath.Join(dir, "sentinel-"+port+".conf")
		body := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %q\nsentinel monitor %s 127.0.0.1 %s 1\nsentinel down-after-milliseconds %s 1000\n",
			port, dir, name, masterPort, name)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			tb.Fatalf("write sentinel config: %v", err)
		}
		return []string{conf, "--sentinel"}
	})
	s := &Sentinel{Addrs: []string{sn.Addr}, MasterName: name, Master: master}

	sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr})
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	testutil.Eventually(tb, sentinelTimeout, func() error {
		addr, err := sc.GetMasterAddrByName(ctx, name).Result()
		if err == nil && len(addr) == 2 && net.JoinHostPort(addr[0], addr[1]) == master.Addr {
			return nil
		}
		return fmt.Errorf("sentinel %s does not name master %s: %v %v", sn.Addr, master.Addr, addr, err)
	})
	return s
}

// need returns the path of the named binary. Without it the test is skipped, unless CI is set:
// CI must have it.
func need(tb testing.TB, name string) string {
	tb.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("%s not found but CI is set: .ci/run must install it (%v)", name, err)
		}
		tb.Skipf("%s not installed (apt-get install redis-server redis-tools); skipping integration test", name)
	}
	return bin
}

// launch runs bin with the arguments args gives for a free loopback port and returns once its
// log shows marker; the process is killed when the test ends. A process that exits first (the
// port was taken between FreePort and the bind) is retried on other ports, 5 times.
func launch(tb testing.TB, bin, marker string, args func(port string) []string) *Server {
	tb.Helper()
	var argv, log []string
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			tb.Fatalf("find a free port: %v", err)
		}
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port)}
		argv = args(strconv.Itoa(port))
		s.cmd = exec.Command(bin, argv...)
		stdout, err := s.cmd.StdoutPipe()
		if err != nil {
			tb.Fatalf("%s pipe: %v", bin, err)
		}
		s.cmd.Stderr = s.cmd.Stdout
		if err := s.cmd.Start(); err != nil {
			tb.Fatalf("start %s: %v", bin, err)
		}
		proc := s.cmd.Process
		hung := time.AfterFunc(startTimeout, func() { _ = proc.Kill() }) // ends the read below
		var ok bool
		ok, log = ready(stdout, marker)
		hung.Stop()
		if ok {
			tb.Cleanup(s.Stop)
			return s
		}
		s.Stop()
	}
	tb.Fatalf("%s %v did not start after 5 attempts; last log:\n%s", bin, argv, strings.Join(log, "\n"))
	return nil
}

// ready reads a Redis process's log until a line contains marker (true) or the log ends
// (false, with the last lines read).
func ready(out io.Reader, marker string) (bool, []string) {
	sc := bufio.NewScanner(out)
	var tail []string
	for sc.Scan() {
		if strings.Contains(sc.Text(), marker) {
			go func() { // keep draining so the process never blocks on a full pipe
				for sc.Scan() {
				}
			}()
			return true, nil
		}
		if tail = append(tail, sc.Text()); len(tail) > 20 {
			tail = tail[1:]
		}
	}
	return false, tail
}

func ping(addr string, tlsConfig *tls.Config) error {
	c := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: tlsConfig})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// handedOut holds every port FreePort returned in this process.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: make(map[int]bool)}

// FreePort returns a loopback port that was free a moment ago, for a process a test starts
// (which must bind the port itself). It never returns the same port twice in one test binary:
// the kernel readily hands a just-closed port out again, so two calls in a row could otherwise
// give one port to two listeners.
func FreePort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no loopback port free that was not handed out already")
}
