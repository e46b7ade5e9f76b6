package h1server_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// behaviour is a test handler; note records what the handler saw (a Write's error) so that two
// servers' handlers can be compared too.
type behaviour func(w http.ResponseWriter, r *http.Request, note func(format string, args ...any))

// step is what a client sends at once, and the methods of the requests whose answers it then
// reads (in order; pipelined requests have several).
type step struct {
	send    string
	answers []string
}

// diffCase is one row of the differential tables: the same bytes go to net/http and to
// h1server in front of the same settings, and what comes back must be the same.
type diffCase struct {
	name    string
	handler behaviour // nil: echo
	steps   []step    // nil: one GET /
	// loops is, on h1server, which loop must have served each handler call ("own" or
	// "net/http"), so that a row also checks that an ordinary request stays on h1server's loop
	// and a handed-over one does not; nil: every call on the own loop.
	loops []string
	logs  bool               // the servers' logs are compared too
	cfg   func(*http.Server) // changes both servers' settings (nil: baseConfig's)
}

// outcome is everything a client and the handler saw of one diffCase on one server.
type outcome struct {
	Answers []answer
	Err     string // reading an answer that was expected failed: how
	After   string // the connection after the last answer: "open" (a probe request was answered), "closed"
	Notes   []string
	Logs    []string
}

// recorder collects, per server, the handler's notes and the loop of each handler call.
type recorder struct {
	mu    sync.Mutex
	notes []string
	loops []string
}

func (rec *recorder) handler(b behaviour) http.Handler {
	if b == nil {
		b = echo
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == probePath {
			io.WriteString(w, "probe")
			return
		}
		rec.mu.Lock()
		rec.loops = append(rec.loops, loopOf(w))
		rec.mu.Unlock()
		b(w, r, func(format string, args ...any) {
			rec.mu.Lock()
			rec.notes = append(rec.notes, fmt.Sprintf(format, args...))
			rec.mu.Unlock()
		})
	})
}

// echo answers with everything the handler can see of the request, in a deterministic form.
func echo(w http.ResponseWriter, r *http.Request, _ func(string, ...any)) {
	body, err := io.ReadAll(r.Body)
	var b strings.Builder
	fmt.Fprintf(&b, "method=%q proto=%q %d.%d\n", r.Method, r.Proto, r.ProtoMajor, r.ProtoMinor)
	fmt.Fprintf(&b, "requestURI=%q host=%q\n", r.RequestURI, r.Host)
	u := r.URL
	fmt.Fprintf(&b, "url=%q scheme=%q opaque=%q host=%q path=%q rawPath=%q rawQuery=%q forceQuery=%v fragment=%q\n",
		u.String(), u.Scheme, u.Opaque, u.Host, u.Path, u.RawPath, u.RawQuery, u.ForceQuery, u.Fragment)
	fmt.Fprintf(&b, "close=%v contentLength=%d transferEncoding=%q noBody=%v tls=%v\n",
		r.Close, r.ContentLength, r.TransferEncoding, r.Body == http.NoBody, r.TLS != nil)
	fmt.Fprintf(&b, "remoteAddr is 127.0.0.1:port: %v\n", strings.HasPrefix(r.RemoteAddr, "127.0.0.1:"))
	for _, k := range sortedKeys(r.Header) {
		fmt.Fprintf(&b, "header %q: %q\n", k, r.Header[k])
	}
	fmt.Fprintf(&b, "body=%q err=%v\n", body, err)
	for _, k := range sortedKeys(r.Trailer) {
		fmt.Fprintf(&b, "trailer %q: %q\n", k, r.Trailer[k])
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, b.String())
}

// run plays c on a new server of kind and returns what came back.
func (c diffCase) run(t *testing.T, kind string) (outcome, *recorder) {
	t.Helper()
	rec := &recorder{}
	ts := startServer(t, kind, rec.handler(c.handler), c.cfg)
	cl := dial(t, ts.addr)
	var o outcome
	func() {
		for _, st := range c.allSteps() {
			if err := cl.write(st.send); err != nil {
				o.Err = "write: " + classify(err)
				return
			}
			for _, m := range st.answers {
				a, err := cl.readAnswer(m)
				if err != nil {
					o.Err = classify(err)
					return
				}
				o.Answers = append(o.Answers, a)
			}
		}
	}()
	if o.Err == "" {
		o.After = cl.probe()
	} else if o.Err == stateClosed {
		o.After = stateClosed
	}
	// The probe's answer, or the end of the connection, comes after every handler call of the
	// case returned: the notes and logs are complete.
	rec.mu.Lock()
	o.Notes = rec.notes
	rec.mu.Unlock()
	if c.logs {
		o.Logs = ts.logs.lines()
	}
	return o, rec
}

// allSteps returns c's steps, or the default one: GET /.
func (c diffCase) allSteps() []step {
	if c.steps == nil {
		return []step{get("/")}
	}
	return c.steps
}

// runDiff runs every case on both kinds of server and reports any difference.
func runDiff(t *testing.T, cases []diffCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			want, _ := c.run(t, stdKind)
			got, rec := c.run(t, h1Kind)
			if diff := cmp.Diff(want, got); diff != "" {
				var sent strings.Builder
				for _, st := range c.allSteps() {
					fmt.Fprintf(&sent, "  %q\n", st.send)
				}
				t.Errorf("sent:\n%sh1server's outcome differs from net/http's (-net/http +h1server):\n%s", sent.String(), diff)
			}
			rec.mu.Lock()
			loops := rec.loops
			rec.mu.Unlock()
			if c.loops == nil {
				for i, l := range loops {
					if l != "own" {
						t.Errorf("handler call %d was served by %s, want h1server's own loop (an ordinary request)", i+1, l)
					}
				}
			} else if !slices.Equal(loops, c.loops) {
				t.Errorf("handler calls served by %q, want %q", loops, c.loops)
			}
		})
	}
}

func get(target string, lines ...string) step {
	return step{request("GET", target, lines...), []string{"GET"}}
}

func head(target string, lines ...string) step {
	return step{request("HEAD", target, lines...), []string{"HEAD"}}
}

// TestConformanceRequests sends requests, ordinary and not, to both servers with a handler that
// echoes what it sees of the request. An ordinary request must reach the handler exactly as
// net/http would have given it (method, target, URL, Host, header names made canonical, values
// trimmed, duplicates kept, Close, no body) and be served on h1server's own loop; any other must
// be handed over and get net/http's own answer (its 400s, its 431, its body handling), on the
// same connection as the ordinary requests before it.
func TestConformanceRequests(t *testing.T) {
	post := "POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"
	bigValue := strings.Repeat("v", 6000)
	var manyLines []string
	for i := range 70 {
		manyLines = append(manyLines, fmt.Sprintf("X-Line-%02d: %d", i, i))
	}
	cases := []diffCase{
		{name: "ordinary GET", steps: []step{get("/a/b?x=1&y=2", "User-Agent: test", "Accept: */*")}},
		{name: "lowercase header names", steps: []step{get("/", "user-agent: test", "x-custom-header: 1", "x_under_score: 2", "ACCEPT-ENCODING: gzip", "content-TYPE: text/plain", "www-authenticate: x")}},
		{name: "lowercase method", steps: []step{get("/").withMethod("get")}},
		{name: "extension method", steps: []step{{request("PURGE", "/cache"), []string{"PURGE"}}}},
		{name: "OPTIONS on a path", steps: []step{{request("OPTIONS", "/x"), []string{"OPTIONS"}}}},
		{name: "DELETE without a body", steps: []step{{request("DELETE", "/x/1"), []string{"DELETE"}}}},
		{name: "duplicate headers", steps: []step{get("/", "Accept: a", "X-Dup: 1", "accept: b", "X-DUP: 2", "X-Dup: 3")}},
		{name: "values trimmed, empty, with tabs", steps: []step{get("/", "X-Empty:", "X-Spaces:   padded   ", "X-Tabs:\t\ttab\tinside\t", "X-None:  ")}},
		{name: "obs-text in a value", steps: []step{get("/", "X-Name: caf\xc3\xa9 \xff")}},
		{name: "escaped path and query", steps: []step{get("/a%2Fb/c%20d/%41?q=%41&r=a+b&&s")}},
		{name: "empty query", steps: []step{get("/p?")}},
		{name: "fragment in the target", steps: []step{get("/p?q=1#frag")}},
		{name: "double slash path", steps: []step{get("//evil.example/x")}},
		{name: "non-ASCII target", steps: []step{get("/caf\xc3\xa9")}},
		{name: "Host with port", steps: []step{{"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", []string{"GET"}}}},
		{name: "IPv6 Host", steps: []step{{"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", []string{"GET"}}}},
		{name: "Host after other headers", steps: []step{{"GET / HTTP/1.1\r\nAccept: x\r\nhost: Example.COM\r\n\r\n", []string{"GET"}}}},
		{name: "Pragma no-cache", steps: []step{get("/", "Pragma: no-cache")}},
		{name: "Pragma no-cache with Cache-Control", steps: []step{get("/", "Pragma: no-cache", "Cache-Control: max-age=0")}},
		{name: "Connection close from the client", steps: []step{get("/", "Connection: close")}},
		{name: "Connection close among tokens", steps: []step{get("/", "Connection: keep-alive, Close")}},
		{name: "Connection keep-alive", steps: []step{get("/", "Connection: keep-alive")}},
		{name: "pipelined GETs", steps: []step{{request("GET", "/1") + request("GET", "/2", "X-N: 2") + request("GET", "/3"), []string{"GET", "GET", "GET"}}}},
		{name: "pipelined GET and HEAD", steps: []step{{request("HEAD", "/1") + request("GET", "/2"), []string{"HEAD", "GET"}}}},
		{name: "pipelined, the first with Connection close", steps: []step{{request("GET", "/1", "Connection: close") + request("GET", "/2"), []string{"GET", "GET"}}}},
		{name: "sequential GETs", steps: []step{get("/1"), get("/2"), get("/3")}},
		{name: "head split across writes", steps: []step{{"GET /split HTTP/1.1\r\nHo", nil}, {"st: example.com\r\nX-A: 1\r\n\r\n", []string{"GET"}}}},
		{name: "head split in its blank line", steps: []step{{"GET /split HTTP/1.1\r\nHost: example.com\r\n\r", nil}, {"\n", []string{"GET"}}}},
		{name: "head larger than the read buffer", steps: []step{get("/", "X-Big: "+bigValue)}},
		{name: "more header lines than the loop keeps", steps: []step{get("/", manyLines...)}, loops: []string{"net/http"}},
		{name: "Host value trimmed", steps: []step{{"GET / HTTP/1.1\r\nHost: \t example.com \t\r\n\r\n", []string{"GET"}}}},

		// Not ordinary: handed over, net/http decides.
		{name: "POST with Content-Length", steps: []step{{post, []string{"POST"}}}, loops: []string{"net/http"}},
		{name: "POST chunked with a trailer", steps: []step{{"POST /c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", []string{"POST"}}}, loops: []string{"net/http"}},
		{name: "GET with Content-Length 0", steps: []step{get("/", "Content-Length: 0")}, loops: []string{"net/http"}},
		{name: "GET with Transfer-Encoding", steps: []step{{"GET / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []string{"GET"}}}, loops: []string{"net/http"}},
		{name: "unknown Transfer-Encoding", steps: []step{get("/", "Transfer-Encoding: gzip")}},
		{name: "HTTP/1.0", steps: []step{{"GET / HTTP/1.0\r\n\r\n", []string{"GET"}}}, loops: []string{"net/http"}},
		{name: "HTTP/1.0 keep-alive", steps: []step{{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", []string{"GET"}}, get("/next")}, loops: []string{"net/http", "net/http"}},
		{name: "HTTP/1.2", steps: []step{{"GET / HTTP/1.2\r\nHost: example.com\r\n\r\n", []string{"GET"}}}, loops: []string{"net/http"}},
		{name: "version in lower case", steps: []step{{"GET / http/1.1\r\nHost: example.com\r\n\r\n", []string{"GET"}}}},
		{name: "HTTP/2 preface", steps: []step{{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", []string{"PRI"}}}, loops: []string{"net/http"}},
		{name: "missing Host", steps: []step{{"GET / HTTP/1.1\r\nAccept: x\r\n\r\n", []string{"GET"}}}},
		{name: "two Host headers", steps: []step{{"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", []string{"GET"}}}},
		{name: "empty Host", steps: []step{{"GET / HTTP/1.1\r\nHost:\r\n\r\n", []string{"GET"}}}, loops: []string{"net/http"}},
		{name: "bad Host", steps: []step{{"GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", []string{"GET"}}}},
		{name: "Host with user info", steps: []step{{"GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n", []string{"GET"}}}},
		{name: "Host with percent", steps: []step{{"GET / HTTP/1.1\r\nHost: ex%41mple.com\r\n\r\n", []string{"GET"}}}, loops: []string{"net/http"}},
		{name: "obs-fold", steps: []step{{"GET / HTTP/1.1\r\nHost: example.com\r\nX-Folded: a\r\n b\r\n\r\n", []string{"GET"}}}, loops: []string{"net/http"}},
		{name: "bare LF line ends", steps: []step{{"GET / HTTP/1.1\nHost: example.com\nX-A: 1\n\n", []string{"GET"}}}, loops: []string{"net/http"}},
		{name: "bare LF blank line", steps: []step{{"GET / HTTP/1.1\r\nHost: example.com\r\n\n", []string{"GET"}}}, loops: []string{"net/http"}},
		{name: "space before colon", steps: []step{get("/", "X-Space : 1")}},
		{name: "header name not a token", steps: []step{get("/", "X(bad): 1")}},
		{name: "NUL in a value", steps: []step{get("/", "X-Nul: a\x00b")}},
		{name: "CR in a value", steps: []step{get("/", "X-Cr: a\rb")}},
		{name: "line without colon", steps: []step{get("/", "NoColon")}},
		{name: "OPTIONS *", steps: []step{{"OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n", []string{"OPTIONS"}}}, loops: []string{"net/http"}},
		{name: "absolute-form target", steps: []step{get("http://other.example/abs?q=1")}, loops: []string{"net/http"}},
		{name: "CONNECT", steps: []step{{"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", []string{"CONNECT"}}}, loops: []string{"net/http"}},
		{name: "request line garbage", steps: []step{{"GARBAGE\r\n\r\n", []string{"GET"}}}},
		{name: "method not a token", steps: []step{{"G(T / HTTP/1.1\r\nHost: example.com\r\n\r\n", []string{"GET"}}}},
		{name: "target without slash", steps: []step{get("foo")}},
		{name: "control byte in the target", steps: []step{get("/a\x01b")}},
		{name: "two spaces in the request line", steps: []step{{"GET /  HTTP/1.1\r\nHost: example.com\r\n\r\n", []string{"GET"}}}},
		{name: "head larger than MaxHeaderBytes", steps: []step{get("/", "X-Huge: "+strings.Repeat("h", 12000))}},
		// net/http reads at most MaxHeaderBytes+4096 bytes (8192 here) for a head. (Not compared:
		// a head just over it behind a pipelined request, which net/http serves when its bufio
		// already holds part of it, outside the next request's read limit; h1server answers 431.)
		{name: "head of exactly the read limit", steps: []step{sized(8192)}},
		{name: "head one byte over the read limit", steps: []step{sized(8193)}},
		{name: "head at the read limit behind a request", steps: []step{{request("GET", "/1") + sized(8192).send, []string{"GET", "GET"}}}},
		{name: "leading CRLF", steps: []step{{"\r\n" + request("GET", "/"), []string{"GET"}}}},
		{name: "stray CRLF after a GET", steps: []step{{request("GET", "/1") + "\r\n" + request("GET", "/2"), []string{"GET", "GET"}}}},
		{name: "stray CRLF after a POST", steps: []step{{post + "\r\n" + request("GET", "/2"), []string{"POST", "GET"}}}, loops: []string{"net/http", "net/http"}},
		{name: "Expect 100-continue", steps: []step{{"POST /e HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello", []string{"POST"}}}, loops: []string{"net/http"}},
		{name: "unknown Expect", steps: []step{get("/", "Expect: magic")}},
		{name: "Upgrade", steps: []step{get("/ws", "Connection: Upgrade", "Upgrade: websocket")}, loops: []string{"net/http"}},
		{name: "GET then POST, pipelined", steps: []step{{request("GET", "/1") + post, []string{"GET", "POST"}}}, loops: []string{"own", "net/http"}},
		{name: "GET then POST, one after the other", steps: []step{get("/1"), {post, []string{"POST"}}, get("/3")}, loops: []string{"own", "net/http", "net/http"}},
		{name: "POST then GET", steps: []step{{post, []string{"POST"}}, get("/2")}, loops: []string{"net/http", "net/http"}},
		{name: "POST then GET, pipelined", steps: []step{{post + request("GET", "/2"), []string{"POST", "GET"}}}, loops: []string{"net/http", "net/http"}},
	}
	runDiff(t, cases)
}

// sized is a GET whose head is exactly n bytes long.
func sized(n int) step {
	const pre, post = "GET /sized HTTP/1.1\r\nHost: example.com\r\nX-Pad: ", "\r\n\r\n"
	return step{pre + strings.Repeat("p", n-len(pre)-len(post)) + post, []string{"GET"}}
}

// withMethod returns s with its request line's method replaced.
func (s step) withMethod(m string) step {
	_, rest, _ := strings.Cut(s.send, " ")
	s.send = m + " " + rest
	return s
}

// TestConformanceEarlyRefusal: net/http refuses a request line it cannot parse as soon as that
// line is in, without waiting for the rest of the head; a client that sent only that line gets
// its 400 at once. h1server must hand such a connection over instead of waiting for a blank line
// that may never come (it would then time the connection out without an answer).
func TestConformanceEarlyRefusal(t *testing.T) {
	runDiff(t, []diffCase{
		{name: "garbage line only", steps: []step{{"GARBAGE\r\n", []string{"GET"}}}},
		{name: "HTTP/0.9 request line only", steps: []step{{"GET /\r\n", []string{"GET"}}}},
	})
}

// TestConformanceAnswers runs handler behaviours on an ordinary GET (or HEAD) on both servers:
// the answer's framing (Content-Length, chunked, none), its headers, the sniffed Content-Type,
// trailers, 1xx answers, errors of Write and whether the connection stays open must be what
// net/http does.
func TestConformanceAnswers(t *testing.T) {
	large := bytes.Repeat([]byte("x"), 5000)
	html := []byte("<!DOCTYPE html><html><body>" + strings.Repeat("hello ", 1000) + "</body></html>")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("hello, compressed world"))
	zw.Close()
	second := request("GET", "/second")

	cases := []diffCase{
		{name: "small body", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			io.WriteString(w, "hello, world\n")
		}},
		{name: "no write", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {}},
		{name: "empty write", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			n, err := w.Write(nil)
			note("write: %d %v", n, err)
		}},
		{name: "only WriteHeader", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.WriteHeader(http.StatusAccepted)
		}},
		{name: "body in small writes", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			for i := range 16 {
				fmt.Fprintf(w, "line %d\n", i)
			}
		}},
		{name: "large body, chunked", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Type", "application/octet-stream")
			n, err := w.Write(large)
			note("write: %d %v", n, err)
		}},
		{name: "large body in small writes, chunked", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Type", "application/octet-stream")
			for range 100 {
				w.Write(large[:64])
			}
		}},
		{name: "larger than the output buffer", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(bytes.Repeat(large, 8))
			w.Write(large[:10])
			w.Write(bytes.Repeat(large, 2))
		}},
		{name: "large body without Content-Type, one write", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Write(html)
		}},
		{name: "large body without Content-Type, small writes", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			for b := html; len(b) > 0; b = b[min(len(b), 700):] {
				w.Write(b[:min(len(b), 700)])
			}
		}},
		{name: "sniffed Content-Type", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			io.WriteString(w, "<html><body>hi</body></html>")
		}},
		{name: "no sniffing with Content-Encoding", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz.Bytes())
		}},
		{name: "Content-Type present but empty", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header()["Content-Type"] = nil
			io.WriteString(w, "<html></html>")
		}},
		{name: "explicit Content-Length", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}},
		{name: "explicit Content-Length, large body", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", "10000")
			w.Write(large)
			w.Write(large)
		}},
		{name: "Content-Length, fewer bytes written", steps: []step{{request("GET", "/") + second, []string{"GET", "GET"}}}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "hello")
		}},
		{name: "Content-Length, more bytes written", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Length", "3")
			n1, err1 := io.WriteString(w, "abc")
			n2, err2 := io.WriteString(w, "d")
			note("writes: %d %v, %d %v", n1, err1, n2, err2)
		}},
		{name: "Content-Length, one write too long", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Length", "3")
			n, err := io.WriteString(w, "abcd")
			note("write: %d %v", n, err)
		}},
		{name: "invalid Content-Length", logs: true, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Length", "12abc")
			io.WriteString(w, "hello")
		}},
		{name: "HEAD, no write", steps: []step{head("/")}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {}},
		{name: "HEAD, body written", steps: []step{head("/")}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			n, err := io.WriteString(w, "hello, world")
			note("write: %d %v", n, err)
		}},
		{name: "HEAD, large body written", steps: []step{head("/")}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Type", "application/octet-stream")
			n, err := w.Write(large)
			note("write: %d %v", n, err)
		}},
		{name: "HEAD, explicit Content-Length", steps: []step{head("/")}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Length", "42")
		}},
		{name: "HEAD, explicit Content-Length and body", steps: []step{head("/")}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Length", "5")
			n, err := io.WriteString(w, "hello")
			note("write: %d %v", n, err)
		}},
		{name: "HEAD, then GET", steps: []step{head("/"), get("/")}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			io.WriteString(w, "same body for both")
		}},
		{name: "204", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.WriteHeader(http.StatusNoContent)
			n, err := io.WriteString(w, "x")
			note("write: %d %v", n, err)
		}},
		{name: "204 with Content-Length and Content-Type", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Length", "5")
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusNoContent)
		}},
		{name: "304", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
			n, err := io.WriteString(w, "x")
			note("write: %d %v", n, err)
		}},
		{name: "304 with Content-Type", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotModified)
		}},
		{name: "304 with Content-Length", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Length", "42")
			w.WriteHeader(http.StatusNotModified)
		}},
		{name: "103 then 200", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Add("Link", "</style.css>; rel=preload; as=style")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "ok")
		}},
		{name: "two 103s then 201", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("Link", "</b.js>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusCreated)
		}},
		{name: "trailers declared, values after a Flush", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Trailer", "X-Checksum, x-count")
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Checksum", "abc")
			w.Header().Set("X-Count", "1")
		}},
		{name: "trailers declared, small body", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Trailer", "X-Checksum")
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "body")
			w.Header().Set("X-Checksum", "abc")
		}},
		{name: "trailers declared, large body", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Trailer", "X-Checksum")
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(large)
			w.Header().Set("X-Checksum", "abc")
		}},
		{name: "TrailerPrefix after a Flush", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "part")
			w.(http.Flusher).Flush()
			w.Header().Set(http.TrailerPrefix+"X-Late", "v")
		}},
		{name: "TrailerPrefix before the body", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set(http.TrailerPrefix+"X-Early", "v")
			io.WriteString(w, "body")
		}},
		{name: "TrailerPrefix after a small body", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			io.WriteString(w, "body")
			w.Header().Set(http.TrailerPrefix+"X-Lost", "v")
		}},
		{name: "Flush mid-body", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "first ")
			note("flush: %v", http.NewResponseController(w).Flush())
			io.WriteString(w, "second")
		}},
		{name: "Flush before any write", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			note("flush: %v", http.NewResponseController(w).Flush())
		}},
		{name: "Flush sniffs the body so far", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			io.WriteString(w, "<html>")
			w.(http.Flusher).Flush()
			io.WriteString(w, "</html>")
		}},
		{name: "Flush with Content-Length", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello")
			w.(http.Flusher).Flush()
			io.WriteString(w, " world")
		}},
		{name: "HEAD, Flush", steps: []step{head("/")}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			io.WriteString(w, "x")
			note("flush: %v", http.NewResponseController(w).Flush())
		}},
		{name: "Connection close set by the handler", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		}},
		{name: "Connection keep-alive set by the handler", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Connection", "keep-alive")
			io.WriteString(w, "hi")
		}},
		{name: "Connection keep-alive set by the handler, close asked", steps: []step{get("/", "Connection: close")}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Connection", "keep-alive")
			io.WriteString(w, "hi")
		}},
		{name: "header changed after WriteHeader", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("X-Before", "1")
			w.WriteHeader(http.StatusOK)
			w.Header().Set("X-After", "1")
			w.Header().Set("Content-Type", "text/csv")
			io.WriteString(w, "x")
		}},
		{name: "header changed after the first Write", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "x")
			w.Header().Set("X-After", "1")
		}},
		{name: "WriteHeader twice", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.WriteHeader(http.StatusAccepted)
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "x")
		}},
		{name: "status without a text", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.WriteHeader(299)
			io.WriteString(w, "x")
		}},
		{name: "http.Error", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Length", "99")
			http.Error(w, "it broke", http.StatusInternalServerError)
		}},
		{name: "header names and values sanitised", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			h := w.Header()
			h["Bad Name"] = []string{"x"}
			h["X-Newline"] = []string{"a\r\nb", "c\n"}
			h["X-Spaces"] = []string{"  padded\t"}
			h["x-not-canonical"] = []string{"kept"}
			io.WriteString(w, "x")
		}},
		{name: "several values", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Add("X-Multi", "1")
			w.Header().Add("X-Multi", "2")
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			io.WriteString(w, "x")
		}},
		{name: "Date set by the handler", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Date", "Mon, 02 Jan 2006 15:04:05 GMT")
			io.WriteString(w, "x")
		}},
		{name: "Transfer-Encoding chunked set by the handler", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Transfer-Encoding", "chunked")
			io.WriteString(w, "x")
		}},
		{name: "handler panic", logs: true, steps: []step{{request("GET", "/") + second, []string{"GET", "GET"}}}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			if r.URL.Path == "/second" {
				note("second request served")
				return
			}
			panic("boom")
		}},
		{name: "handler panic after a write", logs: true, steps: []step{{request("GET", "/") + second, []string{"GET", "GET"}}}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			if r.URL.Path == "/second" {
				note("second request served")
				return
			}
			io.WriteString(w, "partial")
			panic("boom")
		}},
		{name: "handler panic after a Flush", logs: true, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic("boom")
		}},
		{name: "panic ErrAbortHandler", logs: true, steps: []step{{request("GET", "/") + second, []string{"GET", "GET"}}}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			if r.URL.Path == "/second" {
				note("second request served")
				return
			}
			panic(http.ErrAbortHandler)
		}},
		{name: "panic ErrAbortHandler after a Flush", logs: true, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}},
		{name: "body of exactly the held-back size", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Write(large[:2048])
		}},
		{name: "body one byte over the held-back size", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Write(large[:2049])
		}},
		{name: "held-back size reached in two writes", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Write(large[:1000])
			w.Write(large[:1048])
		}},
		{name: "held-back size passed in the second write", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Write(large[:1000])
			w.Write(large[:1049])
		}},
		{name: "sniffed across a short and a long write", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			io.WriteString(w, "<ht")
			w.Write(html[3:])
		}},
		{name: "Date suppressed by an empty value", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header()["Date"] = nil
			io.WriteString(w, "x")
		}},
		{name: "Content-Length with spaces", logs: true, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Length", " 5")
			io.WriteString(w, "hello")
		}},
		{name: "Content-Length and Transfer-Encoding chunked", logs: true, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Length", "5")
			w.Header().Set("Transfer-Encoding", "chunked")
			io.WriteString(w, "hello")
		}},
		{name: "Transfer-Encoding identity set by the handler", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Transfer-Encoding", "identity")
			io.WriteString(w, "until the end")
		}},
		{name: "trailer declared for a field not allowed in trailers", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Trailer", "Content-Type, Www-Authenticate, X-Ok")
			io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set("Content-Type", "text/late")
			w.Header().Set("Www-Authenticate", "Basic")
			w.Header().Set("X-Ok", "1")
		}},
		{name: "1xx after the final status", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.WriteHeader(http.StatusOK)
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "x")
		}},
		{name: "100 Continue without Expect", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.WriteHeader(http.StatusContinue)
			io.WriteString(w, "x")
		}},
		{name: "101 without a hijack", handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "example")
			w.WriteHeader(http.StatusSwitchingProtocols)
		}},
		{name: "answer to Connection close", steps: []step{get("/", "Connection: close")}, handler: func(w http.ResponseWriter, r *http.Request, note func(string, ...any)) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(large)
		}},
	}
	runDiff(t, cases)
}
