// Package h1server serves a plain-HTTP listener's ordinary HTTP/1.1 requests on its own
// connection loop and hands every connection that sends anything else to a net/http server.
//
// Ordinary means a request net/http would parse the same way without any of its special cases:
// HTTP/1.1, an origin-form target, exactly one plain Host, CRLF line ends, token header names,
// no obs-fold, and no body (no Content-Length, Transfer-Encoding, Expect, Trailer or Upgrade).
// Nearly every request of an Academy client is one. The first request that is not (a body, an
// HTTP/1.0 caller, a head over MaxHeaderBytes, a byte net/http would refuse) hands its connection,
// with the bytes already read, to the fallback http.Server, which serves it from then on. So
// every refusal, every body rule and every limit stays net/http's own; this loop only has to be
// right for the requests it keeps.
//
// Why: under load net/http's server cost about a fifth of the gateway's CPU per request (a
// background read per request, three deadline updates, two buffers per connection); see
// docs/benchmarks.md. This loop runs one goroutine per connection and no background read,
// updates a deadline about once per tenth of a timeout, and keeps 1 KiB per idle connection.
package h1server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// goneEvery is how often the connections whose request is still being served are checked for a
// caller that went away (its request's context is then cancelled, as net/http's background read
// does). A request answered within that time is never checked.
const goneEvery = 100 * time.Millisecond

// newConnGrace is how long Shutdown leaves a connection that has not sent its first request
// yet (net/http's rule: its request may be on the wire).
const newConnGrace = 5 * time.Second

// Server serves one listener. Its limits are those of Fallback: ReadHeaderTimeout, ReadTimeout,
// WriteTimeout (the first write of each answer), IdleTimeout, MaxHeaderBytes, ErrorLog, and its
// Handler serves both loops.
type Server struct {
	fallback  *http.Server
	ctx       context.Context // every request's, as net/http's: the server under ServerContextKey
	maxValues int             // the fallback's limit on header lines (net/http answers 431 above it)

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*conn]struct{}
	handoff  *handoffListener
	shutting atomic.Bool
	done     chan struct{} // closed by Shutdown: stops the watcher
}

// New returns a Server with fallback's handler and limits. fallback must not serve anything
// else: Serve runs it on the connections handed over.
func New(fallback *http.Server) *Server {
	return &Server{fallback: fallback, ctx: context.WithValue(context.Background(), http.ServerContextKey, fallback),
		maxValues: maxHeaderValues(fallback), conns: make(map[*conn]struct{}), done: make(chan struct{})}
}

// Serve accepts connections on ln until Shutdown, and returns http.ErrServerClosed then; any
// other error of ln.Accept that is not temporary ends it too.
func (s *Server) Serve(ln net.Listener) error {
	defer ln.Close()
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.ln = ln
	s.handoff = &handoffListener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	s.mu.Unlock()
	go s.fallback.Serve(s.handoff) // ends with Shutdown's fallback.Shutdown
	go s.watch()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return http.ErrServerClosed
			}
			if ne, ok := err.(interface{ Temporary() bool }); ok && ne.Temporary() && !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: wait, as net/http does, up to a second.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logf("h1server: accept error: %v; retrying in %v", err, backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.shutting.Load() { // Shutdown has looked at the connections already
			s.mu.Unlock()
			nc.Close()
			return http.ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go c.serve()
	}
}

// Shutdown stops accepting connections, closes the idle ones, waits for those serving a request
// to finish it, then shuts the fallback server down (the connections handed to it), all within
// ctx. Answers written while it runs carry Connection: close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.shutting.Swap(true)
	ln := s.ln
	s.mu.Unlock()
	if first {
		close(s.done)
	}
	if ln != nil {
		ln.Close()
	}
	wait := time.Millisecond
	for !s.closeIdle() {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
	return s.fallback.Shutdown(ctx)
}

// closeIdle closes the connections waiting for a request and reports whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for c := range s.conns {
		if c.served.Load() || now.Sub(c.born) >= newConnGrace {
			c.closeIfIdle()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// watch cancels the request of a connection whose caller went away.
func (s *Server) watch() {
	t := time.NewTicker(goneEvery)
	defer t.Stop()
	var busy []*conn
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			busy = busy[:0]
			s.mu.Lock()
			for c := range s.conns {
				if c.busyFor(now) >= goneEvery {
					busy = append(busy, c)
				}
			}
			s.mu.Unlock()
			for _, c := range busy {
				c.cancelIfGone()
			}
		}
	}
}

func (s *Server) logf(format string, args ...any) {
	if l := s.fallback.ErrorLog; l != nil {
		l.Printf(format, args...)
	}
}

// handoffListener is the fallback server's listener: it accepts the connections the loop hands
// over.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give hands c to the fallback server; false: it has shut down.
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// prefixConn is a connection handed over with the bytes already read from it.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// CloseWrite lets net/http half-close the connection before closing it, as it does for the
// connections it accepts itself (so an answer is not lost to a reset).
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
