// Package redistest starts a real redis-server for integration tests: a fresh process on a free
// loopback port, without persistence, stopped when the test ends.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server.
type Server struct {
	// Addr is its 127.0.0.1:port address.
	Addr string
	cmd  *exec.Cmd
}

// URL returns the redis:// URL of db 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a go-redis client of s, closed when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
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

// Start runs redis-server for the test. Without the binary the test is skipped, unless CI is
// set: CI must have it.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("redis-server not found but CI is set: .ci/run must install it (%v)", err)
		}
		tb.Skip("redis-server not installed (apt-get install redis-server); skipping integration test")
	}
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("find a free port: %v", err)
		}
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port)}
		s.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--save", "", "--appendonly", "no", "--dir", tb.TempDir())
		stdout, err := s.cmd.StdoutPipe()
		if err != nil {
			tb.Fatalf("redis-server pipe: %v", err)
		}
		if err := s.cmd.Start(); err != nil {
			tb.Fatalf("start redis-server: %v", err)
		}
		if ready(stdout) {
			tb.Cleanup(s.Stop)
			if err := ping(s.Addr); err != nil {
				tb.Fatalf("redis-server on %s: %v", s.Addr, err)
			}
			return s
		}
		s.Stop() // the port was taken between freePort and the bind: try another
	}
	tb.Fatal("redis-server did not start after 5 attempts")
	return nil
}

// ready reads redis-server's log until it accepts connections or exits.
func ready(out interface{ Read([]byte) (int, error) }) bool {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Ready to accept connections") {
			go func() { // keep draining so the server never blocks on a full pipe
				for sc.Scan() {
				}
			}()
			return true
		}
	}
	return false
}

func ping(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
