package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/internal/testutil"
)

// rawUpstream is an upstream on 127.0.0.1 that answers each request head it reads with the
// bytes answer returns, exactly as given: the tests see what goes over the wire both ways.
type rawUpstream struct {
	ln     net.Listener
	answer func(n int, head string) (raw string, hangUp bool)
	mu     sync.Mutex
	conns  int      // connections accepted
	heads  []string // request heads, in arrival order
	open   []net.Conn
}

func newRawUpstream(t *testing.T, answer func(n int, head string) (string, bool)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, answer: answer}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		u.mu.Lock()
		for _, c := range u.open {
			c.Close()
		}
		u.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns++
			u.open = append(u.open, c)
			u.mu.Unlock()
			wg.Go(func() { u.serve(c) })
		}
	})
	return u
}

func (u *rawUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		u.mu.Lock()
		u.heads = append(u.heads, head.String())
		n := len(u.heads)
		u.mu.Unlock()
		raw, hangUp := u.answer(n, head.String())
		if _, err := io.WriteString(c, raw); err != nil || hangUp {
			return
		}
	}
}

func (u *rawUpstream) stats() (conns int, heads []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns, append([]string(nil), u.heads...)
}

func (u *rawUpstream) url() *url.URL {
	return &url.URL{Scheme: "http", Host: u.ln.Addr().String(), Path: "/api/v2"}
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"

// h1 returns the proxy handler and its h1Transport in front of u.
func h1(t *testing.T, u *rawUpstream, timeout time.Duration) (http.Handler, *h1Transport) {
	t.Helper()
	base := u.url()
	tr, ok := NewUpstreamTransport(base, timeout).(*h1Transport)
	if !ok {
		t.Fatalf("NewUpstreamTransport(%s) is not the caller-goroutine transport", base)
	}
	t.Cleanup(tr.CloseIdleConnections)
	f := newFixture(t, func(o *Options) { o.Upstream = base; o.Transport = tr })
	return f.h, tr
}

func get(h http.Handler, method, target string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.Header.Set("X-Api-Key", testKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestH1RequestOnTheWire(t *testing.T) {
	u := newRawUpstream(t, func(int, string) (string, bool) { return okAnswer, false })
	h, _ := h1(t, u, time.Second)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/people/Robert%20Downey%20Jr?page=2", nil)
	req.Header.Set("X-Api-Key", testKey)
	req.Header.Set("Connection", "X-Drop")
	req.Header.Set("X-Drop", "1")
	req.Header.Set("Accept", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.String() != `{"ok":true}` {
		t.Fatalf("got %d %q", rec.Code, rec.Body)
	}
	_, heads := u.stats()
	head := heads[0]
	wantStart := "GET /api/v2/people/Robert%20Downey%20Jr?page=2 HTTP/1.1\r\nHost: " + u.ln.Addr().String() + "\r\n"
	if !strings.HasPrefix(head, wantStart) {
		t.Errorf("request head starts %q, want %q", head, wantStart)
	}
	for _, c := range []struct {
		line string
		want int
	}{
		{"Authorization: Bearer tok-old\r\n", 1},
		{"Accept: application/json\r\n", 1},
		{"X-Forwarded-For: 192.0.2.1\r\n", 1},
		{"\r\nHost: ", 1},
		{"Content-Length", 0}, // a GET without a body, as net/http writes it
		{"Connection", 0},     // hop-by-hop, and the headers it named
		{"X-Drop", 0},
		{"User-Agent", 0}, // ReverseProxy's empty User-Agent is not sent
		{"X-Api-Key", 0},
		{"Accept-Encoding", 0},
	} {
		if n := strings.Count(head, c.line); n != c.want {
			t.Errorf("%q appears %d times, want %d, in\n%s", c.line, n, c.want, head)
		}
	}
}

// TestH1ResponseRules: 1xx answers reach the caller, hop-by-hop headers (and those named by
// Connection) do not, trailers do.
func TestH1ResponseRules(t *testing.T) {
	u := newRawUpstream(t, func(int, string) (string, bool) {
		return "HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n" +
			"Trailer: X-Checksum\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n" +
			"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n", false
	})
	h, _ := h1(t, u, time.Second)
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /movies HTTP/1.1\r\nHost: gw\r\nX-Api-Key: "+testKey+"\r\n\r\n")
	br := bufio.NewReader(c)
	early, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if early.StatusCode != http.StatusEarlyHints || early.Header.Get("Link") != "</app.css>; rel=preload" {
		t.Errorf("first answer %d %v, want the upstream's 103 with its Link", early.StatusCode, early.Header)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "hello" {
		t.Fatalf("body %q, %v", body, err)
	}
	for _, name := range []string{"X-Secret", "Keep-Alive"} {
		if v := resp.Header.Get(name); v != "" {
			t.Errorf("%s: %q reached the caller", name, v)
		}
	}
	if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
		t.Errorf("trailer X-Checksum = %q, want abc", got)
	}
}

func TestH1ConnectionReuse(t *testing.T) {
	u := newRawUpstream(t, func(n int, head string) (string, bool) {
		switch {
		case strings.HasPrefix(head, "HEAD "):
			return "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", false // no body follows a HEAD
		case n == 3:
			return "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 11\r\n\r\n{\"ok\":true}", false
		}
		return okAnswer, false
	})
	h, _ := h1(t, u, time.Second)
	for i, c := range []struct {
		method string
		conns  int // upstream connections after the request
	}{
		{http.MethodGet, 1},
		{http.MethodHead, 1},
		{http.MethodGet, 1}, // answered with Connection: close
		{http.MethodGet, 2},
		{http.MethodGet, 2},
	} {
		if rec := get(h, c.method, "/movies"); rec.Code != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, rec.Code, rec.Body)
		}
		if conns, _ := u.stats(); conns != c.conns {
			t.Errorf("after request %d (%s): %d upstream connections, want %d", i+1, c.method, conns, c.conns)
		}
	}
}

// TestH1RetriesClosedKeepAlive: the upstream closed a kept-alive connection without saying so
// (its keep-alive timeout, a restart): a GET is sent once more on a new connection.
func TestH1RetriesClosedKeepAlive(t *testing.T) {
	u := newRawUpstream(t, func(n int, _ string) (string, bool) { return okAnswer, n == 1 })
	h, tr := h1(t, u, time.Second)
	if rec := get(h, http.MethodGet, "/movies"); rec.Code != http.StatusOK {
		t.Fatalf("first: %d %s", rec.Code, rec.Body)
	}
	tr.mu.Lock()
	idle := len(tr.idle)
	tr.mu.Unlock()
	if idle != 1 {
		t.Fatalf("%d idle connections, want the closed one still pooled", idle)
	}
	if rec := get(h, http.MethodGet, "/movies"); rec.Code != http.StatusOK {
		t.Fatalf("second: %d %s, want 200 on a new connection", rec.Code, rec.Body)
	}
	if conns, heads := u.stats(); conns != 2 || len(heads) != 2 {
		t.Errorf("%d connections, %d requests; want 2 and 2", conns, len(heads))
	}
}

// TestH1ClosesWhatTheUpstreamClosed: the sweep closes idle connections the upstream has closed.
func TestH1ClosesWhatTheUpstreamClosed(t *testing.T) {
	u := newRawUpstream(t, func(int, string) (string, bool) { return okAnswer, true })
	h, tr := h1(t, u, time.Second)
	if rec := get(h, http.MethodGet, "/movies"); rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	testutil.EventuallyTrue(t, 5*time.Second, "the closed connection is closed here too", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.idle) == 0 && len(tr.slots) == 0
	})
}

func TestH1IdleTimeout(t *testing.T) {
	u := newRawUpstream(t, func(int, string) (string, bool) { return okAnswer, false })
	h, tr := h1(t, u, time.Second)
	tr.idleFor = time.Nanosecond // every idle connection is too old when next wanted
	for range 2 {
		if rec := get(h, http.MethodGet, "/movies"); rec.Code != http.StatusOK {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	if conns, _ := u.stats(); conns != 2 {
		t.Errorf("%d upstream connections, want 2 (no reuse after the idle timeout)", conns)
	}
	testutil.EventuallyTrue(t, 5*time.Second, "the sweep closes the idle connection", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.idle) == 0 && len(tr.slots) == 0
	})
}

// TestH1BoundsConnections: requests beyond the bound wait for a connection instead of opening
// one.
func TestH1BoundsConnections(t *testing.T) {
	release := make(chan struct{})
	u := newRawUpstream(t, func(int, string) (string, bool) { <-release; return okAnswer, false })
	h, tr := h1(t, u, time.Second)
	tr.slots = make(chan struct{}, 2)
	var wg sync.WaitGroup
	codes := make([]int, 6)
	for i := range codes {
		wg.Go(func() { codes[i] = get(h, http.MethodGet, "/movies").Code })
	}
	testutil.EventuallyTrue(t, 5*time.Second, "two requests reach the upstream", func() bool {
		_, heads := u.stats()
		return len(heads) == 2
	})
	close(release)
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("request %d: %d", i, c)
		}
	}
	if conns, heads := u.stats(); conns != 2 || len(heads) != len(codes) {
		t.Errorf("%d connections for %d requests, want 2 for %d", conns, len(heads), len(codes))
	}
}

func TestH1Failures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer string
		status int
		code   string
	}{
		{"headers too large", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", maxUpstreamHeaderBytes) + "\r\n\r\n", http.StatusBadGateway, "upstream_unavailable"},
		{"not HTTP", "SSH-2.0-OpenSSH_9.6\r\n\r\n", http.StatusBadGateway, "upstream_unavailable"},
		{"no answer", "", http.StatusGatewayTimeout, "upstream_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newRawUpstream(t, func(int, string) (string, bool) { return tc.answer, false })
			h, tr := h1(t, u, 200*time.Millisecond)
			rec := get(h, http.MethodGet, "/movies")
			if rec.Code != tc.status {
				t.Fatalf("status %d %s, want %d", rec.Code, rec.Body, tc.status)
			}
			assertErrorBody(t, rec, tc.code)
			if conns, _ := u.stats(); conns != 1 {
				t.Errorf("%d upstream connections, want 1 (no retry of an answered request)", conns)
			}
			if len(tr.slots) != 0 {
				t.Errorf("%d connections left open", len(tr.slots))
			}
		})
	}
}

// TestH1BodyNotReadToTheEnd: a body closed early, or whose caller went away, closes its
// connection instead of handing it to the next request.
func TestH1BodyNotReadToTheEnd(t *testing.T) {
	u := newRawUpstream(t, func(int, string) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", false // 90 bytes never come
	})
	tr := NewUpstreamTransport(u.url(), time.Second).(*h1Transport)
	for _, cancelFirst := range []bool{false, true} {
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.url().String(), nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		if cancelFirst {
			cancel()
			if _, err := resp.Body.Read(buf); err == nil {
				t.Error("read after the caller went away succeeded")
			}
		}
		resp.Body.Close()
		cancel()
		if len(tr.slots) != 0 || len(tr.idle) != 0 {
			t.Errorf("cancel %v: %d open, %d idle connections, want none", cancelFirst, len(tr.slots), len(tr.idle))
		}
	}
}

// recordingTransport counts the requests handed to it.
type recordingTransport struct {
	mu   sync.Mutex
	reqs []string
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.String())
	r.mu.Unlock()
	return nil, errors.New("recorded")
}

// TestH1HandsOnWhatMayNotBeRetried: requests with a body, with side effects, or for another
// host go through net/http's transport.
func TestH1HandsOnWhatMayNotBeRetried(t *testing.T) {
	next := &recordingTransport{}
	tr := newH1Transport("127.0.0.1:1", next, nil, time.Second)
	for _, tc := range []struct {
		method, url string
		body        io.Reader
	}{
		{http.MethodPost, "http://127.0.0.1:1/a", nil},
		{http.MethodDelete, "http://127.0.0.1:1/a", nil},
		{http.MethodGet, "http://127.0.0.1:1/a", strings.NewReader("x")},
		{http.MethodGet, "https://127.0.0.1:1/a", nil},
		{http.MethodGet, "http://127.0.0.1:2/a", nil},
	} {
		req, _ := http.NewRequest(tc.method, tc.url, tc.body)
		if _, err := tr.RoundTrip(req); err == nil || err.Error() != "recorded" {
			t.Errorf("%s %s: %v, want it handed on", tc.method, tc.url, err)
		}
	}
	if len(next.reqs) != 5 {
		t.Errorf("handed on %v", next.reqs)
	}
	if _, ok := NewUpstreamTransport(&url.URL{Scheme: "https", Host: "academy.example"}, time.Second).(*http.Transport); !ok {
		t.Error("an https upstream does not get net/http's transport")
	}
}

func TestWriteRequestRefusesBadFields(t *testing.T) {
	for _, h := range []http.Header{
		{"X-Bad\r\nInjected": {"1"}},
		{"": {"1"}},
		{"X-Value": {"a\r\nX-Injected: 1"}},
		{"X-Value": {"a\x00"}},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
		req.Header = h
		var out strings.Builder
		if err := writeRequest(bufio.NewWriter(&out), req); err == nil {
			t.Errorf("header %q written: %q", h, out.String())
		}
	}
}

func TestStatusLabel(t *testing.T) {
	for s := 100; s < 600; s++ {
		if got, want := statusLabel(s), strconv.Itoa(s); got != want {
			t.Fatalf("statusLabel(%d) = %q, want %q", s, got, want)
		}
	}
}
