package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"sync"
	"syscall"
	"time"

	"github.com/academy-gateway/academy-gateway/internal/httpsyntax"
)

// NewUpstreamTransport returns the transport of the proxy listener's upstream requests. For a
// plain-HTTP upstream reached without a proxy it is an h1Transport in front of NewTransport: the
// requests that may be retried on another connection (GET, HEAD, OPTIONS, TRACE without a body:
// nearly all of an Academy client's traffic) make their round trip on the caller's goroutine;
// everything else, and every https:// upstream (HTTP/2 where the Academy offers it), goes through
// net/http's transport.
//
// Why: net/http's transport hands each request to two goroutines per connection (one writes,
// one reads) and back, which cost about a fifth of the gateway's CPU per request under load
// (docs/benchmarks.md), and keeps both goroutines and 8 KiB of buffers per idle connection.
func NewUpstreamTransport(upstream *url.URL, timeout time.Duration) http.RoundTripper {
	next := NewTransport(timeout)
	if upstream.Scheme != "http" {
		return next
	}
	if p, err := next.Proxy(&http.Request{URL: upstream}); err != nil || p != nil {
		return next
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return newH1Transport(upstream.Host, next, d.DialContext, timeout)
}

// upstreamBufferSize is the size of each upstream connection's read buffer and of the write
// buffers: a request line and headers, and an Academy answer's headers, fit in it with room to
// spare. Write buffers are pooled, as a request head is written in one go: 256 connections keep
// 1 MiB less.
const upstreamBufferSize = 4 << 10

// maxUpstreamHeaderBytes bounds the status line and headers of an upstream response, as
// net/http's transport bounds them (its default is 10 MiB; an Academy answer has a few hundred
// bytes).
const maxUpstreamHeaderBytes = 1 << 20

// h1Transport is an HTTP/1.1 client for one upstream host that makes the round trip of a
// retryable request on the caller's goroutine: it writes the request, reads the response
// headers, and hands the connection back to its pool when the caller has read the body to the
// end. At most MaxUpstreamConns connections are open at once; requests beyond that wait for one.
type h1Transport struct {
	host    string // host:port of the upstream, as in the request URL
	addr    string // what is dialed
	next    http.RoundTripper
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	timeout time.Duration // wait for the response headers; 0: none
	idleFor time.Duration // an idle connection unused for longer is closed

	writers sync.Pool // *bufio.Writer of upstreamBufferSize

	slots chan struct{} // one per open connection
	freed chan struct{} // a connection went idle or closed: waiters look again
	mu    sync.Mutex
	idle  []*upConn // most recently used last
	sweep *time.Timer
}

func newH1Transport(host string, next http.RoundTripper, dial func(context.Context, string, string) (net.Conn, error), timeout time.Duration) *h1Transport {
	addr := host
	if _, _, err := net.SplitHostPort(host); err != nil {
		addr = net.JoinHostPort(host, "80")
	}
	return &h1Transport{host: host, addr: addr, next: next, dial: dial, timeout: timeout, idleFor: 90 * time.Second,
		slots: make(chan struct{}, MaxUpstreamConns), freed: make(chan struct{}, MaxUpstreamConns)}
}

// upConn is one upstream connection with its buffers.
type upConn struct {
	net.Conn
	lr    io.LimitedReader // between Conn and br: bounds response headers
	br    *bufio.Reader
	since time.Time // when it went idle
	abort func()    // fails its reads and writes at once: the request's context ended
}

func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.URL.Host != t.host || !retryable(req) {
		return t.next.RoundTrip(req)
	}
	ctx := req.Context()
	for fresh := false; ; fresh = true {
		c, reused, err := t.get(ctx, fresh)
		if err != nil {
			return nil, err
		}
		resp, unanswered, err := t.exchange(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		c.Close()
		t.release()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !reused || !unanswered {
			return nil, err
		}
		// A kept-alive connection the upstream had closed: once more on a new one, as net/http's
		// transport does for requests that may be sent twice.
	}
}

// retryable reports whether req may be sent again after a connection failed under it (the
// rule of net/http's transport): no body and a method without side effects.
func retryable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return len(req.Trailer) == 0 && len(req.TransferEncoding) == 0
	}
	return false
}

var errHeadersTooLarge = errors.New("upstream response headers too large")

// exchange writes req on c and reads the response headers; the returned response's body gives
// c back to the pool once it has been read to the end. On failure, unanswered reports that no
// byte of a response had arrived (the connection, not the request, may be what failed).
func (t *h1Transport) exchange(ctx context.Context, c *upConn, req *http.Request) (resp *http.Response, unanswered bool, err error) {
	stop := context.AfterFunc(ctx, c.abort)
	fail := func(err error) (*http.Response, bool, error) {
		stop()
		return nil, unanswered, err
	}
	bw, _ := t.writers.Get().(*bufio.Writer)
	if bw == nil {
		bw = bufio.NewWriterSize(c.Conn, upstreamBufferSize)
	} else {
		bw.Reset(c.Conn)
	}
	err = writeRequest(bw, req)
	bw.Reset(nil)
	t.writers.Put(bw)
	if err != nil {
		unanswered = true
		return fail(fmt.Errorf("write upstream request: %w", err))
	}
	if t.timeout > 0 {
		c.SetReadDeadline(time.Now().Add(t.timeout))
	}
	trace := httptrace.ContextClientTrace(ctx)
	for first := true; ; first = false {
		c.lr.N = maxUpstreamHeaderBytes
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			unanswered = first && c.lr.N == maxUpstreamHeaderBytes && !isTimeout(err)
			if c.lr.N <= 0 {
				err = errHeadersTooLarge
			}
			return fail(fmt.Errorf("read upstream response: %w", err))
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// 1xx: handed on as net/http's transport hands them on (ReverseProxy forwards them).
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	c.lr.N = 1<<63 - 1
	if t.timeout > 0 && (resp.ContentLength < 0 || int64(c.br.Buffered()) < resp.ContentLength) {
		// The body streams for as long as it takes. One that arrived with the headers (an
		// Academy answer of a few KiB) is read from the buffer: the deadline stays, as the next
		// request on the connection sets its own (a deadline costs a runtime timer update).
		c.SetReadDeadline(time.Time{})
	}
	resp.Body = &upBody{ReadCloser: resp.Body, t: t, c: c, stop: stop, keep: !resp.Close && resp.StatusCode != http.StatusSwitchingProtocols}
	return resp, false, nil
}

// writeRequest writes req's request line and headers, as net/http's Request.Write writes those
// of a request without a body (no Content-Length, an empty User-Agent left out).
func writeRequest(w *bufio.Writer, req *http.Request) error {
	uri := req.URL.RequestURI()
	if req.Method == "" {
		w.WriteString(http.MethodGet)
	} else {
		w.WriteString(req.Method)
	}
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	if req.Host != "" {
		w.WriteString(req.Host)
	} else {
		w.WriteString(req.URL.Host)
	}
	w.WriteString("\r\n")
	for k, vs := range req.Header {
		if !httpsyntax.IsToken(k) {
			return fmt.Errorf("invalid header field name %q", k)
		}
		if k == "Host" || k == "Content-Length" || k == "Transfer-Encoding" || k == "Trailer" || k == "Connection" {
			continue // written above, or not for a request without a body
		}
		for _, v := range vs {
			if k == "User-Agent" && v == "" {
				continue
			}
			if !httpsyntax.ValidFieldValue(v) {
				return fmt.Errorf("invalid header field value for %q", k)
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	w.WriteString("\r\n")
	return w.Flush()
}

// upBody is an upstream response body; read to the end, it gives its connection back.
type upBody struct {
	io.ReadCloser
	t    *h1Transport
	c    *upConn
	stop func() bool
	keep bool // the connection may carry another request
	done bool
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.finish(b.keep)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

// Close closes a body not read to the end together with its connection: what is left of it may
// be large, or never come.
func (b *upBody) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

func (b *upBody) finish(keep bool) {
	b.done = true
	if !b.stop() { // the request's context ended: the connection's deadline is in the past
		keep = false
	}
	if keep && b.c.br.Buffered() == 0 {
		b.t.put(b.c)
		return
	}
	b.c.Close()
	b.t.release()
}

// get returns an idle connection (unless fresh) or a new one, waiting while MaxUpstreamConns
// are open.
func (t *h1Transport) get(ctx context.Context, fresh bool) (c *upConn, reused bool, err error) {
	for {
		if !fresh {
			if c := t.popIdle(); c != nil {
				return c, true, nil
			}
		}
		select {
		case t.slots <- struct{}{}:
			conn, err := t.dial(ctx, "tcp", t.addr)
			if err != nil {
				t.release()
				return nil, false, err
			}
			c := &upConn{Conn: conn}
			c.abort = func() { conn.SetDeadline(time.Unix(1, 0)) }
			c.lr.R = conn
			c.br = bufio.NewReaderSize(&c.lr, upstreamBufferSize)
			return c, false, nil
		case <-t.freed:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

func (t *h1Transport) popIdle() *upConn {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for n := len(t.idle); n > 0; n = len(t.idle) {
		c := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		if now.Sub(c.since) < t.idleFor {
			return c
		}
		c.Close()
		t.release()
	}
	return nil
}

// put makes c idle, arming the sweep.
func (t *h1Transport) put(c *upConn) {
	c.since = time.Now()
	t.mu.Lock()
	t.idle = append(t.idle, c)
	if t.sweep == nil {
		t.sweep = time.AfterFunc(sweepEvery, t.closeIdle)
	}
	t.mu.Unlock()
	t.signal()
}

// sweepEvery is how often idle connections are checked: an upstream that closes an idle
// connection (its keep-alive timeout, a restart) leaves a socket that this side must close too.
const sweepEvery = time.Second

// closeIdle closes the idle connections the upstream has closed or that have been idle for
// longer than idleFor, and sweeps again while any stay idle.
func (t *h1Transport) closeIdle() {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	keep := t.idle[:0]
	for _, c := range t.idle {
		if now.Sub(c.since) < t.idleFor && !c.closedByPeer() {
			keep = append(keep, c)
			continue
		}
		c.Close()
		t.release()
	}
	clear(t.idle[len(keep):])
	t.idle = keep
	t.sweep = nil
	if len(t.idle) > 0 {
		t.sweep = time.AfterFunc(sweepEvery, t.closeIdle)
	}
}

// closedByPeer reports whether an idle connection has anything to read (an end of stream, a
// reset, or bytes no request asked for): then it cannot carry another request.
func (c *upConn) closedByPeer() bool {
	if c.br.Buffered() > 0 {
		return true
	}
	c.SetReadDeadline(time.Time{}) // a past one would fail the look below
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	readable := false
	if err := rc.Read(func(fd uintptr) bool { readable = peekable(fd); return true }); err != nil {
		return true
	}
	return readable
}

// release frees the slot of a closed connection.
func (t *h1Transport) release() {
	<-t.slots
	t.signal()
}

func (t *h1Transport) signal() {
	select {
	case t.freed <- struct{}{}:
	default:
	}
}

// CloseIdleConnections closes the idle connections of both transports.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		c.Close()
		t.release()
	}
	if ci, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}
