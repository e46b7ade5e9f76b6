package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/httperr"
)

// abuseUpstream stands between the gateway and the simulator: it records every request the
// gateway forwards and answers a few paths the way a misbehaving or hostile upstream would;
// everything else goes on to the simulator (onboarding's /info included).
type abuseUpstream struct {
	srv    *httptest.Server
	sim    http.Handler
	mu     sync.Mutex
	seen   []seenRequest
	tunnel chan string   // request lines read inside a /ws tunnel
	cut    chan struct{} // /big could not finish writing: the gateway let go of it
}

// seenRequest is one request as the upstream got it, trailers after the body.
type seenRequest struct {
	Method, Path string
	Header       http.Header
	Trailer      http.Header
	BodyLen      int64
	BodyErr      error
}

const bigBody = 64 << 20 // /big's answer: far more than the socket buffers on both sides hold

func newAbuseUpstream(t *testing.T, simURL string) *abuseUpstream {
	t.Helper()
	target, _ := url.Parse(simURL)
	u := &abuseUpstream{sim: httputil.NewSingleHostReverseProxy(target), tunnel: make(chan string, 16), cut: make(chan struct{}, 16)}
	u.srv = httptest.NewServer(u)
	t.Cleanup(u.srv.Close)
	return u
}

func (u *abuseUpstream) record(r *http.Request, n int64, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.seen = append(u.seen, seenRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(),
		Trailer: r.Trailer.Clone(), BodyLen: n, BodyErr: err})
}

// requests returns what the upstream got on paths starting with prefix.
func (u *abuseUpstream) requests(prefix string) []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []seenRequest
	for _, s := range u.seen {
		if strings.HasPrefix(s.Path, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func (u *abuseUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/ws": // switches protocols whatever was asked, then serves raw HTTP inside
		u.record(r, 0, nil)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		brw.Flush()
		for range 8 {
			req, err := http.ReadRequest(brw.Reader)
			if err != nil {
				return
			}
			u.tunnel <- req.Method + " " + req.URL.Path
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			brw.Flush()
		}
	case r.URL.Path == "/early": // answers before reading any of the body
		u.record(r, 0, nil)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"upstream refused early"}}`)
	case r.URL.Path == "/early-read": // reads a little of the body, answers, and closes at once
		u.record(r, 0, nil)
		io.CopyN(io.Discard, r.Body, 256<<10)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 46\r\n\r\n{\"error\":{\"message\":\"upstream refused early\"}}")
		brw.Flush()
		conn.(*net.TCPConn).CloseWrite()
		conn.Close()
	case r.URL.Path == "/big":
		u.record(r, 0, nil)
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < bigBody; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				u.cut <- struct{}{}
				return
			}
		}
	case strings.HasPrefix(r.URL.Path, "/record"):
		n, err := io.Copy(io.Discard, r.Body)
		u.record(r, n, err)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]int64{"read": n})
	default:
		u.record(r, 0, nil)
		u.sim.ServeHTTP(w, r)
	}
}

// abuseStack is a gateway in front of an abuseUpstream, with a read-only key of alice (John's
// Academy account) and a read,write,delete key of bob (Jane's).
type abuseStack struct {
	*stack
	up        *abuseUpstream
	r         *replica
	addr      string // the proxy listener, host:port
	readKey   string
	writeKey  string
	readUser  string
	writeUser string
}

func newAbuseStack(t *testing.T, mutate func(*config.Config)) *abuseStack {
	t.Helper()
	s := newStack(t, time.Minute)
	up := newAbuseUpstream(t, s.simURL)
	s.cfg.Upstream.BaseURL = up.srv.URL
	r := s.start(mutate)
	a := &abuseStack{stack: s, up: up, r: r, addr: strings.TrimPrefix(r.proxyURL, "http://"),
		readUser: "alice", writeUser: "bob"}
	a.readKey = s.connect(r, a.readUser, "john", "read")
	a.writeKey = s.connect(r, a.writeUser, "jane", "read", "write", "delete")
	return a
}

// token is the access token the gateway holds for user.
func (a *abuseStack) token(user string) string {
	a.t.Helper()
	c, err := a.r.app.store.Connection(a.t.Context(), user)
	if err != nil {
		a.t.Fatalf("connection of %s: %v", user, err)
	}
	return c.AccessToken
}

// dial opens a raw connection to the proxy listener, closed when the test ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// boundedWait is how long a raw-socket test waits for an answer or a close before failing: a
// bound on a hang, never a measure of speed.
const boundedWait = 20 * time.Second

// send writes raw bytes to c.
func send(t *testing.T, c net.Conn, raw string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// readAnswer reads one response from br (within boundedWait), with its body.
func readAnswer(t *testing.T, c net.Conn, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(boundedWait))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return resp, string(b)
}

// answers reads responses until the gateway closes the connection and returns them; it fails
// the test when the connection is still open after boundedWait.
func answers(t *testing.T, c net.Conn, br *bufio.Reader) []*http.Response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(boundedWait))
	var out []*http.Response
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			assertClosedErr(t, err)
			return out
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, resp)
	}
}

// assertClosed fails unless the gateway closes c (EOF or reset) within boundedWait; whatever
// arrives before the close is discarded.
func assertClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(boundedWait))
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		return // EOF
	}
	assertClosedErr(t, err)
}

func assertClosedErr(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v", boundedWait)
	}
	// io.EOF, io.ErrUnexpectedEOF or a reset: the gateway closed it.
}

// wantJSONError checks that a response is the gateway's JSON error with the given status and code.
func wantJSONError(t *testing.T, resp *http.Response, body string, status int, code httperr.Code) {
	t.Helper()
	var got httperr.Body
	if resp.StatusCode != status || json.Unmarshal([]byte(body), &got) != nil || got.Error.Code != code ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("got %d %q %s, want %d JSON %s", resp.StatusCode, resp.Header.Get("Content-Type"), body, status, code)
	}
	if status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
		t.Errorf("405 without Allow (RFC 9110 §15.5.6): %s", body)
	}
}

// refusal is a raw request line and the JSON error the gateway must answer it with.
type refusal struct {
	name   string // the subtest's name; "" names it after the line
	line   string
	status int
	code   httperr.Code
}

// wantRefusals sends each refusal's line, with the header lines headers, on a fresh connection
// to addr and checks that the answer is the refusal's JSON error.
func wantRefusals(t *testing.T, addr string, headers []string, refusals []refusal) {
	t.Helper()
	for _, tt := range refusals {
		t.Run(cmp.Or(tt.name, tt.line), func(t *testing.T) {
			c := dial(t, addr)
			send(t, c, request(tt.line, headers, ""))
			resp, body := readAnswer(t, c, bufio.NewReader(c))
			wantJSONError(t, resp, body, tt.status, tt.code)
		})
	}
}

// request builds a raw HTTP/1.1 request: the request line, Host, the given header lines and body.
func request(line string, headers []string, body string) string {
	var b strings.Builder
	b.WriteString(line + "\r\nHost: gateway.test\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n" + body)
	return b.String()
}
