package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/academy-gateway/academy-gateway/metrics"
)

// MaxUpstreamConns bounds the connections to one upstream host, in each of the two transports
// (NewUpstreamTransport's and net/http's); requests beyond it wait for a free one. A connection
// of net/http's transport costs ~25 KiB (two goroutines, 8 KiB of buffers): without a bound,
// 1,000 callers opened ~760-860 of them (goroutines 3,070, stacks 26 MB), with it 257
// (goroutines ~2,400, stacks ~18 MB, RSS 123 → 92 MB). One of the caller-goroutine transport
// costs its 4 KiB read buffer. 256 requests in flight to the upstream at once are far more than
// 2 cores need at any upstream latency the harness has.
const MaxUpstreamConns = 256

// NewTransport returns the upstream transport: a keep-alive pool sized for hundreds of
// concurrent callers on one upstream host (at most MaxUpstreamConns connections, all of which
// may stay idle), and timeouts on every phase before the response headers (timeout bounds the
// wait for them; bodies stream for as long as they take).
func NewTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         earlyAnswerDialer(&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}),
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: MaxUpstreamConns,
		MaxConnsPerHost:     MaxUpstreamConns,
		// A caller that wants gzip asks for it and gets the upstream's bytes as they are; one
		// that does not gets identity either way, without the transport asking for gzip and
		// inflating the answer on the way through.
		DisableCompression:    true,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
	}
}

// earlyAnswerDialer dials upstream connections that can hide a failed body write from the
// transport once the upstream has answered.
//
// An upstream may answer before it has read the request body (a 400 for a 50 MB upload) and
// close the connection; writing the rest of the body then fails (EPIPE, ECONNRESET). The
// transport waits for the body write and the response at once and gives up on whichever fails
// first, so the caller could get a 502 instead of the upstream's own answer, depending on
// scheduling (issue 14 item 7). See earlyAnswerConn.
func earlyAnswerDialer(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &earlyAnswerConn{Conn: c}, nil
	}
}

// earlyAnswerConn is a net.Conn that, once part of the request in flight has been written,
// reports failed writes as done and discards them: the transport goes on reading and hands on
// the response the upstream sent, or fails on the read side (a reset, EOF, the response-header
// timeout) when there is none. Such a request could never have been retried anyway. A write that
// fails before any byte of the request went out (a stale keep-alive connection) fails as usual,
// so the transport's own retry of unsent requests is unchanged. The request boundaries come from
// the client trace (begin on GotConn); on connections whose requests are not traced nothing is
// ever hidden.
type earlyAnswerConn struct {
	net.Conn
	begun  atomic.Bool // a traced request is in flight on this connection
	wrote  atomic.Bool // bytes of that request went out
	broken atomic.Bool // a write failed after that: discard the rest
}

// begin marks the start of a request on the connection.
func (c *earlyAnswerConn) begin() {
	c.wrote.Store(false)
	c.begun.Store(true)
}

func (c *earlyAnswerConn) Write(b []byte) (int, error) {
	if c.broken.Load() {
		return len(b), nil
	}
	n, err := c.Conn.Write(b)
	switch {
	case err == nil:
		if c.begun.Load() {
			c.wrote.Store(true)
		}
	case c.wrote.Load() && !errors.Is(err, net.ErrClosed):
		c.broken.Store(true)
		return len(b), nil
	}
	return n, err
}

// traceEarlyAnswers marks the connection a request gets as the start of that request.
func traceEarlyAnswers(req *http.Request) *http.Request {
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		c := info.Conn
		if tc, ok := c.(*tls.Conn); ok {
			if tc.ConnectionState().NegotiatedProtocol == "h2" {
				return // HTTP/2 ends an early-answered stream on its own (RST_STREAM)
			}
			c = tc.NetConn()
		}
		if ec, ok := c.(*earlyAnswerConn); ok {
			ec.begin()
		}
	}}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
}

// replayTransport sends the upstream request and, when the Academy answers 401 to a token the
// gateway believed valid, gets another token and sends the request once more (docs/reference.md §4 step 5).
type replayTransport struct {
	next   http.RoundTripper
	tokens Tokens
	m      *metrics.Metrics
	now    func() time.Time
}

func (t *replayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	x := exchangeFrom(req.Context())
	resp, err := t.send(req, x)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !x.replayable {
		return resp, err
	}
	fresh, rerr := t.tokens.Rejected(req.Context(), x.conn)
	resp.Body.Close()
	if rerr != nil {
		// A refresh that cannot complete is the gateway's failure, never the Academy's 401: a
		// legacy caller would read that as "my key is wrong" (docs/reference.md §4 step 5).
		return nil, rerr
	}
	x.conn, x.refreshed = fresh, true
	retry := req.Clone(req.Context())
	retry.Header.Set("Authorization", "Bearer "+fresh.AccessToken)
	if x.replay != nil {
		retry.Body = io.NopCloser(bytes.NewReader(x.replay))
	}
	return t.send(retry, x)
}

// send makes one upstream round trip and records its duration.
func (t *replayTransport) send(req *http.Request, x *exchange) (*http.Response, error) {
	began := t.now()
	if req.Body != nil && req.Body != http.NoBody {
		req = traceEarlyAnswers(req) // only a body write can fail after an early answer
	}
	resp, err := t.next.RoundTrip(req)
	d := t.now().Sub(began)
	x.upstream += d
	code := "error"
	if err == nil {
		code = statusLabel(resp.StatusCode)
	}
	t.m.UpstreamDuration.WithLabelValues(methodLabel(req.Method), code).Observe(d.Seconds())
	return resp, err
}

// methodLabel bounds the method label to the methods HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodTrace, http.MethodConnect:
		return m
	}
	return "OTHER"
}
