package h1server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/h1server"
)

// Every test here runs on both kinds of server: the expectations are net/http's, and running
// them on net/http too shows that they are (a test that fails on net/http is wrong).

// okHandler answers every request with "ok".
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

// mustAnswer sends an ordinary GET and checks that it is answered 200 and the connection kept.
func (c *client) mustAnswer(target string) answer {
	c.t.Helper()
	c.mustWrite(request("GET", target))
	a, err := c.readAnswer(http.MethodGet)
	if err != nil {
		c.t.Fatalf("GET %s: no answer: %v", target, err)
	}
	if a.Status != "200 OK" {
		c.t.Fatalf("GET %s: %s %q, want 200 OK", target, a.Status, a.Body)
	}
	return a
}

// slowHead writes a request head that never ends: its request line and Host at once, then one
// byte of a header value every 20 ms (so that the server sees it arrive slowly, not to wait for
// anything), until a write fails or the test ends. It returns when the first bytes were written.
// (The drip is inside a header line on purpose: net/http answers 400 when its header timeout
// cuts a request line, because bufio hands it the partial line, and closes silently when it
// cuts a header line, the case compared here.)
func (c *client) slowHead(t *testing.T) time.Time {
	t.Helper()
	c.mustWrite("GET /slow HTTP/1.1\r\nHost: example.com\r\nX-Slow: ")
	first := time.Now()
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range 1000 { // at most 1000 ticks: 20 s
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if c.write("a") != nil {
				return
			}
		}
	}()
	return first
}

// clockSlack allows for the time between a server arming a deadline and the client taking the
// time it compares against (the client may see an answer before the server waits again).
const clockSlack = 20 * time.Millisecond

// TestReadHeaderTimeout: a connection whose head is not whole within ReadHeaderTimeout is
// closed without an answer, whether it sends nothing at all, or a head byte by byte on a new
// connection or after a first request (then the time counts from the head's first bytes, not
// from the idle wait: the connection is closed long before IdleTimeout).
//
// Closed within ioTimeout, and never before the timeout (less slack for the clocks of the two
// sides): h1server re-arms a deadline only about once per tenth of its timeout, and then to
// 1.1 × the timeout, so it closes between 1 and 1.1 × the timeout, never early (SPEC §3).
func TestReadHeaderTimeout(t *testing.T) {
	const rht = 300 * time.Millisecond
	const idle = 3 * time.Second
	cfg := func(s *http.Server) { s.ReadHeaderTimeout, s.IdleTimeout = rht, idle }
	rows := []struct {
		name  string
		setup func(t *testing.T, c *client) time.Time // returns when the timeout started
	}{
		{"nothing sent", func(t *testing.T, c *client) time.Time { return time.Now() }},
		{"slow head on a new connection", func(t *testing.T, c *client) time.Time { return c.slowHead(t) }},
		{"slow head after a request", func(t *testing.T, c *client) time.Time {
			c.mustAnswer("/first")
			return c.slowHead(t)
		}},
	}
	for _, kind := range kinds {
		for _, row := range rows {
			t.Run(kind+"/"+row.name, func(t *testing.T) {
				t.Parallel()
				ts := startServer(t, kind, okHandler, cfg)
				c := dial(t, ts.addr)
				began := row.setup(t, c)
				closedAt, got, err := c.waitClosed()
				if err != nil {
					t.Fatalf("connection not closed within %v: %v", ioTimeout, err)
				}
				if len(got) > 0 {
					t.Errorf("the server answered a head it timed out: %q", got)
				}
				took := closedAt.Sub(began)
				if took < rht-clockSlack {
					t.Errorf("closed %v after the head began, before ReadHeaderTimeout (%v)", took, rht)
				}
				if took > idle*3/4 {
					t.Errorf("closed %v after the head began: the header timeout (%v) did not apply", took, rht)
				}
				t.Logf("closed after %v", took)
			})
		}
	}
}

// TestIdleTimeout: a kept-alive connection with no next request is closed after IdleTimeout
// (not after ReadHeaderTimeout, which is shorter here: that one counts only once a head began).
// Never before IdleTimeout (less clockSlack), which is well above ReadHeaderTimeout; h1server
// may close up to a tenth of it late (see TestReadHeaderTimeout). The second row sends its
// second request less than a tenth of IdleTimeout after the first, so a deadline kept from the
// first idle wait would close the connection early.
func TestIdleTimeout(t *testing.T) {
	const rht = 200 * time.Millisecond
	const idle = 800 * time.Millisecond
	for _, kind := range kinds {
		for _, requests := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/%d requests", kind, requests), func(t *testing.T) {
				t.Parallel()
				ts := startServer(t, kind, okHandler, func(s *http.Server) { s.ReadHeaderTimeout, s.IdleTimeout = rht, idle })
				c := dial(t, ts.addr)
				for i := range requests {
					if i > 0 {
						time.Sleep(idle / 10 * 3 / 4) // spaces the requests: nothing to wait for
					}
					c.mustAnswer("/")
				}
				began := time.Now()
				closedAt, got, err := c.waitClosed()
				if err != nil {
					t.Fatalf("idle connection not closed within %v: %v", ioTimeout, err)
				}
				if len(got) > 0 {
					t.Errorf("unexpected bytes on the idle connection: %q", got)
				}
				if took := closedAt.Sub(began); took < idle-clockSlack {
					t.Errorf("idle connection closed after %v, before IdleTimeout (%v)", took, idle)
				} else {
					t.Logf("closed after %v", took)
				}
			})
		}
	}
}

// TestNegativeTimeouts: net/http's rule for its timeouts is "zero: ReadTimeout's; negative:
// none". A negative IdleTimeout or ReadHeaderTimeout with a ReadTimeout set must leave the
// connection open past ReadTimeout (checked by a read that must time out on the client's own
// deadline, then a request that must still be answered).
func TestNegativeTimeouts(t *testing.T) {
	const readTimeout = 200 * time.Millisecond
	const watch = 1 * time.Second
	rows := []struct {
		name  string
		cfg   func(*http.Server)
		setup func(c *client)
	}{
		{"negative IdleTimeout", func(s *http.Server) {
			s.ReadTimeout, s.ReadHeaderTimeout, s.IdleTimeout = readTimeout, 0, -1
		}, func(c *client) { c.mustAnswer("/first") }},
		{"negative ReadHeaderTimeout", func(s *http.Server) {
			s.ReadTimeout, s.ReadHeaderTimeout, s.IdleTimeout = readTimeout, -1, 0
		}, func(c *client) {}},
	}
	for _, kind := range kinds {
		for _, row := range rows {
			t.Run(kind+"/"+row.name, func(t *testing.T) {
				t.Parallel()
				ts := startServer(t, kind, okHandler, row.cfg)
				c := dial(t, ts.addr)
				row.setup(c)
				_ = c.nc.SetReadDeadline(time.Now().Add(watch))
				var b [1]byte
				_, err := c.br.Read(b[:])
				if got := classify(err); got != "timeout" {
					t.Fatalf("read on the waiting connection: %s (%v), want the client's own timeout after %v: the server applied ReadTimeout (%v)", got, err, watch, readTimeout)
				}
				c.mustAnswer("/after")
			})
		}
	}
}

// TestClientGone: a handler whose caller went away (closed its socket, or half-closed it after
// the request as net/http's background read also notices) sees its request's context
// cancelled, as with net/http; h1server checks this only for requests served longer than a
// tenth of a second, so the bound is generous.
func TestClientGone(t *testing.T) {
	rows := []struct {
		name  string
		leave func(nc net.Conn) error
	}{
		{"close", func(nc net.Conn) error { return nc.Close() }},
		{"close write", func(nc net.Conn) error { return nc.(*net.TCPConn).CloseWrite() }},
	}
	for _, kind := range kinds {
		for _, row := range rows {
			t.Run(kind+"/"+row.name, func(t *testing.T) {
				t.Parallel()
				started := make(chan struct{}, 1)
				ended := make(chan error, 1)
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					started <- struct{}{}
					bound := time.NewTimer(10 * time.Second)
					defer bound.Stop()
					select {
					case <-r.Context().Done():
						ended <- r.Context().Err()
					case <-bound.C:
						ended <- errors.New("context not cancelled within 10s")
					}
				})
				ts := startServer(t, kind, h, nil)
				c := dial(t, ts.addr)
				c.mustWrite(request("GET", "/wait"))
				waitFor(t, started, "the handler to start")
				if err := row.leave(c.nc); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-ended:
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("handler's context: %v, want context.Canceled", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("handler's context not cancelled within 5s of the caller leaving")
				}
			})
		}
	}
}

// waitFor waits at most 5 s for a value on ch.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
		panic("unreachable")
	}
}

// blockingHandler is a handler that signals each request's start and answers "done" once
// release is closed.
func blockingHandler() (h http.Handler, started chan struct{}, release chan struct{}) {
	started, release = make(chan struct{}, 10), make(chan struct{})
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == probePath {
			io.WriteString(w, "probe")
			return
		}
		io.Copy(io.Discard, r.Body)
		started <- struct{}{}
		<-release
		io.WriteString(w, "done")
	})
	return h, started, release
}

// TestShutdown checks the graceful shutdown net/http's Shutdown documents: Serve returns
// http.ErrServerClosed at once, idle connections are closed, a request in progress completes
// (its answer carries Connection: close), and Shutdown returns nil after it, or the context's
// error if it expires first.
func TestShutdown(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind+"/idle keep-alive connection closed", func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, kind, okHandler, nil)
			c := dial(t, ts.addr)
			if a := c.mustAnswer("/"); a.Close {
				t.Fatal("answer before Shutdown carries Connection: close")
			}
			if err := <-ts.shutdownAsync(5 * time.Second); err != nil {
				t.Fatalf("Shutdown: %v, want nil", err)
			}
			if _, got, err := c.waitClosed(); err != nil || len(got) > 0 {
				t.Fatalf("idle connection after Shutdown: %q, %v; want closed", got, err)
			}
			if err := ts.waitServe(5 * time.Second); !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("Serve: %v, want http.ErrServerClosed", err)
			}
		})

		t.Run(kind+"/request in progress completes", func(t *testing.T) {
			t.Parallel()
			h, started, release := blockingHandler()
			ts := startServer(t, kind, h, nil)
			c := dial(t, ts.addr)
			c.mustWrite(request("GET", "/slow"))
			waitFor(t, started, "request start")
			shut := ts.shutdownAsync(5 * time.Second)
			// Serve returns once Shutdown has begun: from then on the answer must say close.
			if err := ts.waitServe(5 * time.Second); !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("Serve: %v, want http.ErrServerClosed", err)
			}
			select {
			case err := <-shut:
				t.Fatalf("Shutdown returned %v while a request was in progress", err)
			default:
			}
			close(release)
			a, err := c.readAnswer(http.MethodGet)
			if err != nil {
				t.Fatalf("request in progress at Shutdown: no answer: %v", err)
			}
			if a.Status != "200 OK" || a.Body != "done" || !a.Close {
				t.Errorf("answer: %s %q Connection close: %v; want 200 OK \"done\" with Connection: close", a.Status, a.Body, a.Close)
			}
			if err := waitFor(t, shut, "Shutdown return"); err != nil {
				t.Errorf("Shutdown: %v, want nil", err)
			}
			if _, got, err := c.waitClosed(); err != nil || len(got) > 0 {
				t.Errorf("connection after its last answer: %q, %v; want closed", got, err)
			}
		})

		t.Run(kind+"/context expires first", func(t *testing.T) {
			t.Parallel()
			h, started, release := blockingHandler()
			ts := startServer(t, kind, h, nil)
			t.Cleanup(func() { close(release) }) // before the server's own cleanup: cleanups run in reverse
			c := dial(t, ts.addr)
			c.mustWrite(request("GET", "/stuck"))
			waitFor(t, started, "request start")
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if err := ts.shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown with a handler still blocked: %v, want context.DeadlineExceeded", err)
			}
		})
	}
}

// TestShutdownHandedOver: the connections h1server handed to net/http are shut down by it too:
// an idle one is closed, one serving a request completes it first (with Connection: close).
func TestShutdownHandedOver(t *testing.T) {
	post := "POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		loops := make(chan string, 10)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			loops <- loopOf(w)
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, "ok")
		})
		ts := startServer(t, h1Kind, h, nil)
		c := dial(t, ts.addr)
		c.mustAnswer("/first")
		c.mustWrite(post)
		a, err := c.readAnswer(http.MethodPost)
		if err != nil || a.Status != "200 OK" {
			t.Fatalf("POST: %+v, %v", a, err)
		}
		if got := []string{<-loops, <-loops}; got[0] != "own" || got[1] != "net/http" {
			t.Fatalf("served by %q, want the GET by h1server's loop and the POST by net/http", got)
		}
		if err := <-ts.shutdownAsync(5 * time.Second); err != nil {
			t.Fatalf("Shutdown: %v, want nil", err)
		}
		if _, got, err := c.waitClosed(); err != nil || len(got) > 0 {
			t.Fatalf("handed-over idle connection after Shutdown: %q, %v; want closed", got, err)
		}
	})
	t.Run("request in progress", func(t *testing.T) {
		t.Parallel()
		h, started, release := blockingHandler()
		ts := startServer(t, h1Kind, h, nil)
		c := dial(t, ts.addr)
		c.mustWrite(post)
		waitFor(t, started, "request start")
		shut := ts.shutdownAsync(5 * time.Second)
		if err := ts.waitServe(5 * time.Second); !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve: %v, want http.ErrServerClosed", err)
		}
		close(release)
		a, err := c.readAnswer(http.MethodPost)
		if err != nil || a.Status != "200 OK" || a.Body != "done" {
			t.Fatalf("handed-over request in progress at Shutdown: %+v, %v", a, err)
		}
		if err := waitFor(t, shut, "Shutdown return"); err != nil {
			t.Errorf("Shutdown: %v, want nil", err)
		}
		if _, got, err := c.waitClosed(); err != nil || len(got) > 0 {
			t.Errorf("connection after Shutdown: %q, %v; want closed", got, err)
		}
	})
}

// TestServeAfterShutdown: Serve on a server already shut down returns http.ErrServerClosed and,
// as net/http's Serve documents ("Serve always returns a non-nil error and closes l"), closes
// the listener, so that callers are refused instead of waiting in its backlog.
func TestServeAfterShutdown(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			srv := baseConfig(okHandler, io.Discard)
			serve, shutdown := srv.Serve, srv.Shutdown
			if kind == h1Kind {
				h1 := h1server.New(srv)
				serve, shutdown = h1.Serve, h1.Shutdown
			}
			if err := shutdown(context.Background()); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if err := serve(ln); !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("Serve after Shutdown: %v, want http.ErrServerClosed", err)
			}
			tl := ln.(*net.TCPListener)
			err = tl.SetDeadline(time.Now().Add(200 * time.Millisecond))
			if err == nil {
				var nc net.Conn
				if nc, err = tl.Accept(); nc != nil {
					nc.Close()
				}
			}
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("listener after Serve returned: %v, want it closed (net.ErrClosed)", err)
			}
		})
	}
}

// TestResponseController: on both loops (an ordinary GET, and a POST that h1server hands over)
// the ResponseController calls the gateway's handlers make (proxy.Harden re-arms the write
// deadline before each write) work and return nil, not http.ErrNotSupported, and the request's
// context carries net/http's values: ServerContextKey is the *http.Server given to New,
// LocalAddrContextKey the connection's local address.
func TestResponseController(t *testing.T) {
	type seen struct {
		setWrite, setRead, flush, clearWrite error
		server                               any
		local                                any
		loop                                 string
	}
	rows := []struct {
		name, send, method string
	}{
		{"ordinary GET", request("GET", "/rc"), http.MethodGet},
		{"POST", "POST /rc HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi", http.MethodPost},
	}
	for _, kind := range kinds {
		for _, row := range rows {
			t.Run(kind+"/"+row.name, func(t *testing.T) {
				t.Parallel()
				got := make(chan seen, 1)
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
					rc := http.NewResponseController(w)
					var s seen
					s.setWrite = rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
					s.setRead = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
					io.WriteString(w, "part one, ")
					s.flush = rc.Flush()
					s.setWrite = errors.Join(s.setWrite, rc.SetWriteDeadline(time.Now().Add(5*time.Second)))
					io.WriteString(w, "part two")
					s.clearWrite = rc.SetWriteDeadline(time.Time{})
					s.server = r.Context().Value(http.ServerContextKey)
					s.local = r.Context().Value(http.LocalAddrContextKey)
					s.loop = loopOf(w)
					got <- s
				})
				ts := startServer(t, kind, h, nil)
				c := dial(t, ts.addr)
				c.mustWrite(row.send)
				a, err := c.readAnswer(row.method)
				if err != nil || a.Body != "part one, part two" || len(a.TransferEncoding) != 1 {
					t.Fatalf("answer: %+v, %v; want a chunked \"part one, part two\"", a, err)
				}
				s := waitFor(t, got, "handler result")
				for name, err := range map[string]error{"SetWriteDeadline": s.setWrite, "SetReadDeadline": s.setRead, "Flush": s.flush, "SetWriteDeadline(zero)": s.clearWrite} {
					if err != nil {
						t.Errorf("%s: %v, want nil", name, err)
					}
				}
				if s.server != ts.srv {
					t.Errorf("ServerContextKey: %v, want the fallback *http.Server", s.server)
				}
				if la, ok := s.local.(net.Addr); !ok || la.String() != c.nc.RemoteAddr().String() {
					t.Errorf("LocalAddrContextKey: %v, want %v", s.local, c.nc.RemoteAddr())
				}
				if kind == h1Kind {
					want := map[string]string{http.MethodGet: "own", http.MethodPost: "net/http"}[row.method]
					if s.loop != want {
						t.Errorf("served by %s, want %s", s.loop, want)
					}
				}
			})
		}
	}
}

// TestDeadlinesNotKept: a deadline a handler set with ResponseController is its request's only:
// net/http clears the write deadline after each answer and sets the read deadline for the next
// wait. With no WriteTimeout, a handler that left an expired write deadline must not cost the
// next request on the connection its answer (proxy.Harden sets deadlines on every write).
func TestDeadlinesNotKept(t *testing.T) {
	rows := []struct {
		name string
		set  func(rc *http.ResponseController) error
	}{
		{"write deadline", func(rc *http.ResponseController) error { return rc.SetWriteDeadline(time.Now().Add(-time.Second)) }},
		{"read deadline", func(rc *http.ResponseController) error { return rc.SetReadDeadline(time.Now().Add(-time.Second)) }},
	}
	noTimeouts := func(s *http.Server) { s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout = 0, 0, 0, 0 }
	for _, kind := range kinds {
		for _, row := range rows {
			t.Run(kind+"/"+row.name, func(t *testing.T) {
				t.Parallel()
				setErr := make(chan error, 1)
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path != "/first" {
						io.WriteString(w, "second")
						return
					}
					w.Header().Set("Content-Length", "5")
					io.WriteString(w, "first")
					rc := http.NewResponseController(w)
					err := rc.Flush()
					setErr <- errors.Join(err, row.set(rc)) // the whole answer is out: the deadline is left behind
				})
				ts := startServer(t, kind, h, noTimeouts)
				c := dial(t, ts.addr)
				c.mustAnswer("/first")
				if err := waitFor(t, setErr, "the first handler's result"); err != nil {
					t.Fatalf("Flush, setting the deadline: %v", err)
				}
				c.mustWrite(request("GET", "/second"))
				a, err := c.readAnswer(http.MethodGet)
				if err != nil || a.Body != "second" {
					t.Fatalf("next request after a handler left an expired %s: %+v, %v; want its answer", row.name, a, err)
				}
			})
		}
	}
}

// gateListener is a listener whose Accept, once it has a connection, holds it until release is
// closed; closed is closed by Close. It lets a test put a connection between Accept and Serve's
// use of it exactly when Shutdown runs.
type gateListener struct {
	net.Listener
	accepted  chan struct{} // one value per connection held
	release   chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *gateListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted <- struct{}{}
	<-l.release
	return nc, nil
}

func (l *gateListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// TestShutdownWhileAccepting: a connection that Accept returned while Shutdown ran is the
// server's to finish before Shutdown returns: net/http's Shutdown waits for Serve to stop (so no
// connection is added after it looked), and does not serve a request it reads once shut down.
// Once Shutdown has returned, no handler may start (the program is tearing down what handlers
// use).
func TestShutdownWhileAccepting(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &gateListener{Listener: inner, accepted: make(chan struct{}, 1), release: make(chan struct{}), closed: make(chan struct{})}
			var shutDone atomic.Bool
			lateHandler := make(chan bool, 10) // per handler call: did it start after Shutdown returned
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				lateHandler <- shutDone.Load()
				io.WriteString(w, "ok")
			})
			srv := baseConfig(h, io.Discard)
			serve, shutdown := srv.Serve, srv.Shutdown
			if kind == h1Kind {
				h1 := h1server.New(srv)
				serve, shutdown = h1.Serve, h1.Shutdown
			}
			served := make(chan error, 1)
			go func() { served <- serve(ln) }()

			c := dial(t, inner.Addr().String())
			c.mustWrite(request("GET", "/"))
			waitFor(t, ln.accepted, "the connection to be accepted")

			var shutErr error
			shut := make(chan struct{})
			go func() {
				defer close(shut)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				shutErr = shutdown(ctx)
				shutDone.Store(true)
			}()
			waitFor(t, ln.closed, "Shutdown to close the listener")
			// Give Shutdown a bounded chance to return while the connection is held: h1server's
			// does at once; net/http's waits for Serve, so for it this bound passes. (On a machine
			// so slow that h1server's Shutdown takes longer, the test passes without showing it.)
			select {
			case <-shut:
			case <-time.After(200 * time.Millisecond):
			}
			close(ln.release)
			waitFor(t, shut, "Shutdown to return")
			if shutErr != nil {
				t.Errorf("Shutdown: %v, want nil", shutErr)
			}
			if err := waitFor(t, served, "Serve to return"); !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve: %v, want http.ErrServerClosed", err)
			}
			// The held connection ends one way or the other: answered, or closed unanswered.
			_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
			a, err := c.readAnswer(http.MethodGet)
			t.Logf("the held connection: %s %q, %v", a.Status, a.Body, err)
			select {
			case late := <-lateHandler:
				if late {
					t.Errorf("a handler started after Shutdown returned")
				}
			default:
			}
		})
	}
}
