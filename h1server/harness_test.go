package h1server_test

// The harness every black-box test of this package uses: a server of either kind (plain
// net/http, or h1server in front of the same net/http settings) on a free loopback port, and a
// raw-socket client that writes bytes and reads answers with http.ReadResponse.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/h1server"
)

// The two kinds of server every differential test runs.
const (
	stdKind = "net/http"
	h1Kind  = "h1server"
)

var kinds = []string{stdKind, h1Kind}

// ioTimeout bounds every single read or write of a test client: a server that does not answer
// fails the test instead of hanging it.
const ioTimeout = 5 * time.Second

// testServer is one running server of either kind.
type testServer struct {
	kind string
	addr string
	srv  *http.Server     // the net/http server: the server itself, or h1server's fallback
	h1   *h1server.Server // nil for stdKind
	logs *logBuf

	served    chan error
	mu        sync.Mutex // guards serveDone, serveErr
	serveDone bool
	serveErr  error
}

// baseConfig is the settings both servers of a differential test share: those the gateway
// sets (cmd/academy-gateway/server.go), with limits that no test reaches by accident.
func baseConfig(h http.Handler, logs io.Writer) *http.Server {
	return &http.Server{
		Handler:                      h,
		ReadHeaderTimeout:            time.Second,
		ReadTimeout:                  10 * time.Second,
		WriteTimeout:                 10 * time.Second,
		IdleTimeout:                  30 * time.Second,
		MaxHeaderBytes:               4096,
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     log.New(logs, "", 0),
	}
}

// startServer starts a server of kind with handler h on a free loopback port; cfg (optional)
// changes the net/http settings before it starts. The server is shut down when the test ends,
// and its Serve must then have returned http.ErrServerClosed.
func startServer(t *testing.T, kind string, h http.Handler, cfg func(*http.Server)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	srv := baseConfig(h, logs)
	if cfg != nil {
		cfg(srv)
	}
	ts := &testServer{kind: kind, addr: ln.Addr().String(), srv: srv, logs: logs, served: make(chan error, 1)}
	if kind == h1Kind {
		ts.h1 = h1server.New(srv)
		go func() { ts.served <- ts.h1.Serve(ln) }()
	} else {
		go func() { ts.served <- srv.Serve(ln) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ts.shutdown(ctx); err != nil {
			t.Errorf("%s: Shutdown at the end of the test: %v", kind, err)
		}
		if err := ts.waitServe(5 * time.Second); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("%s: Serve returned %v, want http.ErrServerClosed", kind, err)
		}
	})
	return ts
}

func (ts *testServer) shutdown(ctx context.Context) error {
	if ts.h1 != nil {
		return ts.h1.Shutdown(ctx)
	}
	return ts.srv.Shutdown(ctx)
}

// waitServe waits at most d for Serve to return and returns its error (a timeout error if it
// did not).
// shutdownAsync runs Shutdown with a context of d in the background and returns its result.
func (ts *testServer) shutdownAsync(d time.Duration) <-chan error {
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		shut <- ts.shutdown(ctx)
	}()
	return shut
}

func (ts *testServer) waitServe(d time.Duration) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.serveDone {
		return ts.serveErr
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case ts.serveErr = <-ts.served:
		ts.serveDone = true
		return ts.serveErr
	case <-t.C:
		return fmt.Errorf("Serve did not return within %v", d)
	}
}

// logBuf is a server's ErrorLog: one entry per message.
type logBuf struct {
	mu      sync.Mutex
	entries []string
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.entries = append(l.entries, string(p))
	l.mu.Unlock()
	return len(p), nil
}

var addrRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// lines returns the first line of every entry, with loopback addresses replaced (the ports
// differ between two servers).
func (l *logBuf) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.entries {
		first, _, _ := strings.Cut(e, "\n")
		out = append(out, addrRE.ReplaceAllString(first, "ADDR"))
	}
	return out
}

// client is a raw TCP connection to a test server.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dial connects to addr; the connection is closed when the test ends (before the server is shut
// down: cleanups run last-registered first).
func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *client) write(s string) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := io.WriteString(c.nc, s)
	return err
}

// mustWrite is write that fails the test on an error.
func (c *client) mustWrite(s string) {
	c.t.Helper()
	if err := c.write(s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// informational is a 1xx answer that came before a final one.
type informational struct {
	Status string
	Header http.Header
}

// answer is what a test compares of one final answer: everything http.ReadResponse parses,
// with Date checked and normalised.
type answer struct {
	Proto            string
	Status           string
	Informational    []informational
	Header           http.Header
	ContentLength    int64
	TransferEncoding []string
	Close            bool
	Body             string
	BodyErr          string // reading the body failed: how (the connection ended before it did)
	Trailer          http.Header
}

// readAnswer reads the final answer to a request with method (and any 1xx before it), within
// ioTimeout. An error means no final answer's head could be read.
func (c *client) readAnswer(method string) (answer, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	var a answer
	for range 10 { // a bound on the 1xx answers before the final one
		resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
		if err != nil {
			return a, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			a.Informational = append(a.Informational, informational{resp.Status, resp.Header})
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		a.Proto, a.Status, a.Body = resp.Proto, resp.Status, string(body)
		a.ContentLength, a.TransferEncoding, a.Close = resp.ContentLength, resp.TransferEncoding, resp.Close
		if err != nil {
			a.BodyErr = classify(err)
		}
		a.Header = normaliseDate(resp.Header)
		if len(resp.Trailer) > 0 {
			a.Trailer = resp.Trailer
		}
		return a, nil
	}
	return a, errors.New("more than 10 informational answers")
}

// normaliseDate replaces a Date of the last minute (the server's own) by "<now>", so two
// servers' answers compare equal; any other Date (a handler's, or an invalid one) is kept.
func normaliseDate(h http.Header) http.Header {
	if vs, ok := h["Date"]; ok && len(vs) == 1 {
		if d, err := http.ParseTime(vs[0]); err == nil && time.Since(d).Abs() < time.Minute {
			h["Date"] = []string{"<now>"}
		}
	}
	return h
}

// probePath is the path of the request that tells whether a connection is still open: every
// test handler answers it with "probe".
const probePath = "/__probe"

const probeRequest = "GET " + probePath + " HTTP/1.1\r\nHost: probe\r\n\r\n"

// Connection states after a test's requests.
const (
	stateOpen   = "open"
	stateClosed = "closed"
)

// probe reports whether the connection still carries requests: "open" when a request sent now
// is answered, "closed" when the server ended the connection, else what happened.
func (c *client) probe() string {
	if err := c.write(probeRequest); err != nil {
		return classify(err)
	}
	a, err := c.readAnswer(http.MethodGet)
	if err != nil {
		return classify(err)
	}
	if a.Status != "200 OK" || a.Body != "probe" {
		return fmt.Sprintf("unexpected answer to the probe: %s %q", a.Status, a.Body)
	}
	return stateOpen
}

// waitClosed reads until the server ends the connection (within ioTimeout) and returns when
// that was and the bytes that came before the end; err is the read error if it was not an end
// of the connection (a timeout: the connection stayed open).
func (c *client) waitClosed() (closedAt time.Time, got []byte, err error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	got, err = io.ReadAll(c.br)
	closedAt = time.Now()
	if err == nil || classify(err) == stateClosed {
		return closedAt, got, nil
	}
	return closedAt, got, err
}

// classify names an I/O error: "closed" for the ends of a connection (EOF, reset, broken pipe),
// "timeout" for a deadline, else the error's text.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return stateClosed
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return err.Error()
}

// request builds an HTTP/1.1 request head with Host: example.com first and the given header
// lines after it.
func request(method, target string, lines ...string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: example.com\r\n")
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// sortedKeys returns h's names in order.
func sortedKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// loopOf names the loop that serves a request, from its ResponseWriter: "own" for h1server's,
// "net/http" for net/http's.
func loopOf(w http.ResponseWriter) string {
	if strings.HasPrefix(fmt.Sprintf("%T", w), "*h1server.") {
		return "own"
	}
	return "net/http"
}
