package h1server

// Unit tables for the unexported helpers the loop relies on; the black-box tests are in the
// h1server_test files.

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/internal/httpsyntax"
	"github.com/google/go-cmp/cmp"
)

// TestParseNeedsMore: parse waits while no line is wrong and the blank line has not come,
// and judges each line as soon as it is whole: a bad request line or a bare LF is handed over
// at once (net/http answers it without waiting for the rest).
func TestParseNeedsMore(t *testing.T) {
	tests := []struct {
		in   string
		want verdict
	}{
		{"", needMore},
		{"GET / HTTP/1.1", needMore},
		{"GET / HTTP/1.1\r\n", needMore},
		{"GET / HTTP/1.1\r\nHost: a\r\n", needMore},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r", needMore},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", ordinary},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n", ordinary},
		{"GARBAGE\r\n", foreign},
		{"GET /\r\n", foreign},
		{"GET / HTTP/1.1\n", foreign},
		{"GET / HTTP/1.1\r\nHost: a\n", foreign},
		{"GET / HTTP/1.1\r\nbad header\r\n", foreign},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", foreign}, // "\r\r\n" is no blank line
		{"POST / HTTP/1.1\r\nContent-Length: 1\r\n", foreign},
	}
	for _, tt := range tests {
		x := &exchange{}
		if _, got := x.parse([]byte(tt.in), -1); got != tt.want {
			t.Errorf("parse(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestHasToken: hasToken finds a token in a comma-separated list, in any case, with optional
// whitespace around the elements, and never a part of an element.
func TestHasToken(t *testing.T) {
	tests := []struct {
		v, tok string
		want   bool
	}{
		{"close", "close", true},
		{"Close", "close", true},
		{"CLOSE", "close", true},
		{"keep-alive, close", "close", true},
		{"close, keep-alive", "close", true},
		{" \tclose\t ", "close", true},
		{"keep-alive,,close", "close", true},
		{"", "close", false},
		{"closed", "close", false},
		{"xclose", "close", false},
		{"keep-alive", "close", false},
		{"clo se", "close", false},
		{"close;q=1", "close", false},
		{",", "close", false},
	}
	for _, tt := range tests {
		if got := hasToken(tt.v, tt.tok); got != tt.want {
			t.Errorf("hasToken(%q, %q) = %v, want %v", tt.v, tt.tok, got, tt.want)
		}
		if got := hasToken([]byte(tt.v), tt.tok); got != tt.want {
			t.Errorf("hasToken([]byte(%q), %q) = %v, want %v", tt.v, tt.tok, got, tt.want)
		}
	}
}

// TestCanonicalize: canonicalize makes every token name what textproto (and so net/http's
// request parser) makes it; names with every token byte at the start, in the middle and after a
// dash are tried.
func TestCanonicalize(t *testing.T) {
	names := []string{
		"host", "HOST", "content-type", "CONTENT-TYPE", "x-forwarded-for", "X-FORWARDED-FOR",
		"www-authenticate", "WWW-Authenticate", "etag", "ETAG", "te", "dnt", "x_under_score",
		"a--b", "-leading", "trailing-", "x-1-2", "sec-ch-ua", "accept-encoding", "A", "a",
		"x.y-z", "x~y", "1x-2y",
	}
	for c := range 256 {
		if httpsyntax.TokenByte(byte(c)) {
			s := string(rune(c))
			names = append(names, s+"ab", "a"+s+"b", "a-"+s+"b", "ab"+s)
		}
	}
	for _, name := range names {
		b := []byte(name)
		canonicalize(b)
		if want := textproto.CanonicalMIMEHeaderKey(name); string(b) != want {
			t.Errorf("canonicalize(%q) = %q, want %q", name, b, want)
		}
	}
}

// TestEqualFold: equalFold is ASCII case folding, nothing else.
func TestEqualFold(t *testing.T) {
	tests := []struct {
		b, s string
		want bool
	}{
		{"Host", "host", true},
		{"HOST", "Host", true},
		{"Hos", "Host", false},
		{"Hosts", "Host", false},
		{"H0st", "Host", false},
		{"Content-Length", "content-length", true},
		{"Content_Length", "content-length", false},
		{"\xc5\x9fost", "Host", false},
	}
	for _, tt := range tests {
		if got := equalFold([]byte(tt.b), tt.s); got != tt.want {
			t.Errorf("equalFold(%q, %q) = %v, want %v", tt.b, tt.s, got, tt.want)
		}
	}
}

// parsed is what net/http's request parser and parse must agree on.
type parsed struct {
	Method, RequestURI, Host string
	URL                      string
	Path, RawPath, RawQuery  string
	Close                    bool
	Header                   http.Header
}

// viaNetHTTP parses head with http.ReadRequest and the checks net/http's server adds (HTTP/1.1
// with exactly one Host and no body, here); ok false: net/http would not serve it as a plain
// bodiless HTTP/1.1 request.
func viaNetHTTP(head []byte) (parsed, bool) {
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil || r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.ContentLength != 0 || r.TransferEncoding != nil {
		return parsed{}, false
	}
	for k, vs := range r.Header {
		if !httpsyntax.IsToken(k) {
			return parsed{}, false
		}
		for _, v := range vs {
			if !httpsyntax.ValidFieldValue(v) {
				return parsed{}, false // net/http's server: "invalid header value"
			}
		}
	}
	h := r.Header.Clone()
	delete(h, "Host")
	return parsed{r.Method, r.RequestURI, r.Host, r.URL.String(), r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Close, h}, true
}

// viaParse is parse's view of head (on a copy: parse makes names canonical in place).
func viaParse(head []byte) (parsed, bool) {
	x := &exchange{}
	if n, v := x.parse(bytes.Clone(head), -1); v != ordinary || n != len(head) {
		return parsed{}, false
	}
	return parsed{x.method, x.target, x.host, x.url.String(), x.url.Path, x.url.RawPath, x.url.RawQuery, x.close, x.header}, true
}

func head(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n\r\n" }

// parseCases are heads parse keeps (true) or hands over (false).
var parseCases = []struct {
	name string
	head string
	keep bool
}{
	{"plain GET", head("GET / HTTP/1.1", "Host: example.com"), true},
	{"headers and query", head("GET /a/b?x=1&y=%41 HTTP/1.1", "Host: example.com:8080", "User-Agent: t", "accept: */*", "X-Empty:", "x-dup: 1", "X-Dup: 2"), true},
	{"trimmed values", head("GET / HTTP/1.1", "Host:   example.com  ", "X-A: \t a b \t"), true},
	{"Connection close", head("GET / HTTP/1.1", "Host: a", "Connection: keep-alive, close"), true},
	{"two Connection lines", head("GET / HTTP/1.1", "Host: a", "Connection: keep-alive", "connection: CLOSE"), true},
	{"lowercase method", head("get / HTTP/1.1", "Host: a"), true},
	{"HEAD", head("HEAD /x HTTP/1.1", "Host: a"), true},
	{"IPv6 host", head("GET / HTTP/1.1", "Host: [::1]:80"), true},
	{"obs-text value", head("GET / HTTP/1.1", "Host: a", "X-A: caf\xc3\xa9"), true},
	{"non-ASCII target", head("GET /caf\xc3\xa9 HTTP/1.1", "Host: a"), true},
	{"Pragma no-cache", head("GET / HTTP/1.1", "Host: a", "Pragma: no-cache"), true},
	{"64 header lines", head(append([]string{"GET / HTTP/1.1", "Host: a"}, lines(63)...)...), true},

	{"no Host", head("GET / HTTP/1.1", "Accept: x"), false},
	{"two Hosts", head("GET / HTTP/1.1", "Host: a", "host: b"), false},
	{"empty Host", head("GET / HTTP/1.1", "Host:"), false},
	{"Host with user info", head("GET / HTTP/1.1", "Host: u@a"), false},
	{"HTTP/1.0", head("GET / HTTP/1.0", "Host: a"), false},
	{"HTTP/2.0 preface", head("PRI * HTTP/2.0"), false},
	{"PRI with a path", head("PRI / HTTP/1.1", "Host: a"), false},
	{"CONNECT", head("CONNECT a:443 HTTP/1.1", "Host: a:443"), false},
	{"CONNECT with a path", head("CONNECT /rpc HTTP/1.1", "Host: a"), false},
	{"asterisk", head("OPTIONS * HTTP/1.1", "Host: a"), false},
	{"absolute-form", head("GET http://a/ HTTP/1.1", "Host: a"), false},
	{"Content-Length", head("POST / HTTP/1.1", "Host: a", "Content-Length: 0"), false},
	{"Transfer-Encoding", head("GET / HTTP/1.1", "Host: a", "transfer-encoding: chunked"), false},
	{"Expect", head("GET / HTTP/1.1", "Host: a", "Expect: 100-continue"), false},
	{"Upgrade", head("GET / HTTP/1.1", "Host: a", "Upgrade: websocket"), false},
	{"HTTP2-Settings", head("GET / HTTP/1.1", "Host: a", "HTTP2-Settings: x"), false},
	{"Trailer", head("GET / HTTP/1.1", "Host: a", "Trailer: X"), false},
	{"obs-fold", head("GET / HTTP/1.1", "Host: a", "X-A: 1", " 2"), false},
	{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", false},
	{"bare LF blank line", "GET / HTTP/1.1\r\nHost: a\r\n\n", false},
	{"CR in a value", head("GET / HTTP/1.1", "Host: a", "X-A: 1\r2"), false},
	{"NUL in a value", head("GET / HTTP/1.1", "Host: a", "X-A: 1\x002"), false},
	{"DEL in a value", head("GET / HTTP/1.1", "Host: a", "X-A: 1\x7f"), false},
	{"space before colon", head("GET / HTTP/1.1", "Host: a", "X-A : 1"), false},
	{"no colon", head("GET / HTTP/1.1", "Host: a", "X-A"), false},
	{"empty name", head("GET / HTTP/1.1", "Host: a", ": 1"), false},
	{"name not a token", head("GET / HTTP/1.1", "Host: a", "X@A: 1"), false},
	{"method not a token", head("G@T / HTTP/1.1", "Host: a"), false},
	{"no method", head(" / HTTP/1.1", "Host: a"), false},
	{"no version", head("GET /", "Host: a"), false},
	{"two spaces", head("GET  / HTTP/1.1", "Host: a"), false},
	{"space in the target", head("GET /a b HTTP/1.1", "Host: a"), false},
	{"trailing space", head("GET / HTTP/1.1 ", "Host: a"), false},
	{"control in the target", head("GET /\x01 HTTP/1.1", "Host: a"), false},
	{"bad escape", head("GET /%zz HTTP/1.1", "Host: a"), false},
	{"lowercase version", head("GET / http/1.1", "Host: a"), false},
	{"65 header lines", head(append([]string{"GET / HTTP/1.1", "Host: a"}, lines(65)...)...), false},
}

func lines(n int) []string {
	var out []string
	for i := range n {
		out = append(out, "X-L"+strings.Repeat("x", i)+": v")
	}
	return out
}

// TestParse: parse keeps exactly the ordinary heads, and for every head it keeps, what the
// handler gets (method, target, URL, Host, Close, the header map) is what net/http's parser
// makes of the same bytes; every proper prefix of such a head needs more bytes (the loop must
// not decide early), and a request behind it does not change its length. A head parse hands
// over may be one net/http serves: that is fine.
func TestParse(t *testing.T) {
	for _, tt := range parseCases {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.head)
			got, keep := viaParse(b)
			if keep != tt.keep {
				t.Fatalf("parse kept it: %v, want %v", keep, tt.keep)
			}
			if !keep {
				return
			}
			for i := range len(b) {
				if _, v := (&exchange{}).parse(bytes.Clone(b[:i]), -1); v != needMore {
					t.Fatalf("prefix %q: verdict %v, want needMore", b[:i], v)
				}
			}
			pipelined := append(bytes.Clone(b), "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"...)
			if n, v := (&exchange{}).parse(pipelined, -1); v != ordinary || n != len(b) {
				t.Errorf("with a request behind it: %d, %v; want %d, ordinary", n, v, len(b))
			}
			want, ok := viaNetHTTP(b)
			if !ok {
				t.Fatal("parse keeps a head net/http would not serve as an ordinary request")
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("parse differs from net/http's parser (-net/http +parse):\n%s", diff)
			}
		})
	}
}

// FuzzParse: for any head parse keeps, net/http's parser must accept the same bytes as a
// bodiless HTTP/1.1 request and give the handler the same request; bytes parse wants more of
// must not be a whole bodiless request to net/http either (the loop would wait where net/http
// answers). (go test runs the seeds; go test -fuzz=FuzzParse explores.)
func FuzzParse(f *testing.F) {
	for _, tt := range parseCases {
		f.Add([]byte(tt.head))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, v := (&exchange{}).parse(bytes.Clone(b), -1)
		if v == needMore {
			if r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b))); err == nil && r.ContentLength == 0 && r.TransferEncoding == nil {
				t.Fatalf("parse wants more of %q, a whole request to net/http", b)
			}
		}
		if v != ordinary {
			return
		}
		b = b[:n]
		got, keep := viaParse(b)
		if !keep {
			return
		}
		want, ok := viaNetHTTP(b)
		if !ok {
			t.Fatalf("parse keeps %q, which net/http would not serve as an ordinary request", b)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("%q: parse differs from net/http's parser (-net/http +parse):\n%s", b, diff)
		}
	})
}

// TestTimeouts: the loop's timeouts follow net/http's rules for the fallback's fields:
// ReadHeaderTimeout (IdleTimeout) if not zero, else ReadTimeout; a negative value means no
// timeout ("If negative, or if zero and ReadTimeout is zero or negative, there is no timeout").
// The loop treats a result <= 0 as no timeout, so results are compared as such.
func TestTimeouts(t *testing.T) {
	const rt = 7 * time.Second
	none := time.Duration(0)
	eff := func(d time.Duration) time.Duration { return max(d, 0) }
	tests := []struct {
		name              string
		header, idle, rt  time.Duration // the fallback's ReadHeaderTimeout, IdleTimeout, ReadTimeout
		wantHead, wantIdl time.Duration
	}{
		{"all set", time.Second, 2 * time.Second, rt, time.Second, 2 * time.Second},
		{"zero: ReadTimeout", 0, 0, rt, rt, rt},
		{"none at all", 0, 0, 0, none, none},
		{"negative ReadHeaderTimeout: none", -1, 0, rt, none, rt},
		{"negative IdleTimeout: none", 0, -1, rt, rt, none},
		{"negative ReadTimeout", 0, 0, -1, none, none},
	}
	for _, tt := range tests {
		s := New(&http.Server{ReadHeaderTimeout: tt.header, IdleTimeout: tt.idle, ReadTimeout: tt.rt})
		if got := eff(s.headerTimeout()); got != tt.wantHead {
			t.Errorf("%s: header timeout %v, want %v", tt.name, got, tt.wantHead)
		}
		if got := eff(s.idleTimeout()); got != tt.wantIdl {
			t.Errorf("%s: idle timeout %v, want %v", tt.name, got, tt.wantIdl)
		}
	}
}

// TestMaxHeaderBytes: the loop reads a head up to what net/http reads (MaxHeaderBytes, or its
// default, plus its 4096 bytes of slack) before handing it over for the 431.
func TestMaxHeaderBytes(t *testing.T) {
	for _, tt := range []struct{ set, want int }{{0, http.DefaultMaxHeaderBytes + 4096}, {-5, http.DefaultMaxHeaderBytes + 4096}, {4096, 8192}} {
		if got := New(&http.Server{MaxHeaderBytes: tt.set}).maxHeaderBytes(); got != tt.want {
			t.Errorf("MaxHeaderBytes %d: limit %d, want %d", tt.set, got, tt.want)
		}
	}
}
