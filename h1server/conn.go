package h1server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/academy-gateway/academy-gateway/internal/httpsyntax"
)

// Connection states, for Shutdown: only an idle connection (waiting for a request's first
// byte) is closed under the caller.
const (
	stateIdle int32 = iota
	stateActive
	stateClosed
)

// readBufferSize is each connection's own read buffer: a request head of a few hundred bytes
// (an Academy client's) fits with room to spare. A larger head grows it, up to the fallback's
// MaxHeaderBytes; a connection keeps a grown buffer of up to keepBufferSize for its next
// requests (a browser's cookies), a larger one only for that request.
const (
	readBufferSize = 1 << 10
	keepBufferSize = 8 << 10
)

// maxHeaderLines is the most header lines a request may have and stay on this loop.
const maxHeaderLines = 64

// errHandOff: the request is not one this loop serves.
var errHandOff = errors.New("hand the connection to net/http")

// conn is one connection served by the loop, until it closes or is handed over.
type conn struct {
	s      *Server
	nc     net.Conn
	raw    syscall.RawConn // nil: not a socket, no check for a caller gone
	ctx    context.Context // net/http's: ServerContextKey (ReverseProxy's panic on a cut answer needs it), LocalAddrContextKey
	remote string
	born   time.Time
	served atomic.Bool // a request was read
	state  atomic.Int32

	buf  []byte // buf[r:w] is read and not yet used
	r, w int
	rdl  time.Time // the read deadline in force
	wdl  time.Time // the write deadline in force

	mu     sync.Mutex // guards cancel, since and pipe: the watcher reads them
	cancel context.CancelFunc
	since  time.Time
	pipe   bool // the next request's bytes are already read: the caller is there
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, remote: nc.RemoteAddr().String(), born: time.Now(), buf: make([]byte, readBufferSize),
		ctx: context.WithValue(s.ctx, http.LocalAddrContextKey, nc.LocalAddr())}
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	return c
}

func (c *conn) serve() {
	handedOff := false
	defer func() {
		if !handedOff {
			c.state.Store(stateClosed)
			c.nc.Close()
			c.s.forget(c)
		}
	}()
	for {
		x := &exchange{}
		head, err := c.readHead(x)
		if errors.Is(err, errHandOff) {
			handedOff = c.handOff()
			return
		}
		if err != nil {
			return // the caller left, timed out, or Shutdown closed it
		}
		c.served.Store(true)
		c.r += head
		if !c.serveRequest(x) || c.s.shutting.Load() {
			return
		}
	}
}

// handOff gives the connection and the bytes read from it to the fallback server; false: that
// server is shut down.
func (c *conn) handOff() bool {
	// net/http sets the deadlines it wants, but only those its timeouts ask for.
	_ = c.nc.SetDeadline(time.Time{})
	pc := &prefixConn{Conn: c.nc, prefix: c.buf[c.r:c.w]}
	if !c.s.handoff.give(pc) {
		return false
	}
	c.s.forget(c)
	return true
}

// setIdle marks the connection as waiting for a request; false: Shutdown closed it.
func (c *conn) setIdle() bool {
	for {
		st := c.state.Load()
		if st == stateClosed {
			return false
		}
		if c.state.CompareAndSwap(st, stateIdle) {
			return true
		}
	}
}

// closeIfIdle closes the connection if it waits for a request.
func (c *conn) closeIfIdle() {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		c.nc.Close()
	}
}

// readHead reads until buf[r:] holds a whole request head, parses it into x and returns its
// length (through the blank line); errHandOff when the request is not ordinary.
func (c *conn) readHead(x *exchange) (int, error) {
	limit := c.s.maxHeaderBytes()
	if c.r == c.w {
		c.r, c.w = 0, 0
		if len(c.buf) > keepBufferSize {
			c.buf = make([]byte, readBufferSize)
		}
		if !c.setIdle() {
			return 0, net.ErrClosed
		}
		if c.served.Load() {
			c.armRead(time.Now(), c.s.idleTimeout())
		} else {
			c.armRead(c.born, c.s.headerTimeout())
		}
		n, err := c.nc.Read(c.buf)
		if n == 0 {
			if err == nil {
				err = errors.New("empty read")
			}
			return 0, err
		}
		c.w = n
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return 0, net.ErrClosed
		}
	}
	// A head not whole after its first read must be whole within read_header_timeout of its
	// first bytes; the first request's clock started at accept (net/http's rules).
	began := !c.served.Load()
	for {
		b := c.buf[c.r:c.w]
		if b[0] == '\r' || b[0] == '\n' {
			return 0, errHandOff // blank lines before a request: net/http's rule
		}
		switch n, v := x.parse(b, c.s.maxValues); v {
		case ordinary:
			return n, nil
		case foreign:
			return 0, errHandOff
		}
		if len(b) >= limit {
			return 0, errHandOff // net/http answers 431
		}
		if c.w == len(c.buf) {
			nb := make([]byte, min(2*len(c.buf), limit+1))
			c.w = copy(nb, b)
			c.r, c.buf = 0, nb
		}
		if !began {
			began = true
			c.armRead(time.Now(), c.s.headerTimeout())
		}
		n, err := c.nc.Read(c.buf[c.w:])
		c.w += n
		if err != nil && n == 0 {
			return 0, err
		}
	}
}

// armRead makes the read deadline fall between from+d and from+d+d/10: a deadline in force
// within that span stays, any other is replaced by the span's end. Each update costs a runtime
// timer update, and requests on a connection come microseconds apart, so a connection updates it
// about once per tenth of d, and a timeout fires after 1 to 1.1 × d, never before. d <= 0: none.
func (c *conn) armRead(from time.Time, d time.Duration) {
	if want, ok := rearm(c.rdl, from, d); ok {
		_ = c.nc.SetReadDeadline(want)
		c.rdl = want
	}
}

// armWrite is armRead for the write deadline. Without a WriteTimeout a deadline a handler set
// (http.ResponseController) is cleared: it was that request's.
func (c *conn) armWrite(from time.Time, d time.Duration) {
	if want, ok := rearm(c.wdl, from, d); ok {
		_ = c.nc.SetWriteDeadline(want)
		c.wdl = want
	}
}

// rearm returns the deadline to set in place of cur for a timeout d from from, and whether cur
// must be replaced (see armRead).
func rearm(cur, from time.Time, d time.Duration) (time.Time, bool) {
	if d <= 0 {
		return time.Time{}, !cur.IsZero()
	}
	earliest := from.Add(d)
	latest := earliest.Add(d / 10)
	if !cur.IsZero() && !cur.Before(earliest) && !cur.After(latest) {
		return cur, false
	}
	return latest, true
}

// busyFor returns how long the request in progress has been served, or 0 when none is or its
// caller has already sent more.
func (c *conn) busyFor(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel == nil || c.pipe {
		return 0
	}
	return now.Sub(c.since)
}

// cancelIfGone cancels the request in progress when its caller closed the connection.
func (c *conn) cancelIfGone() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil && c.raw != nil && gone(c.raw) {
		c.cancel()
	}
}

// serveRequest runs the handler for x and writes its answer; it reports whether the
// connection may carry another request.
func (c *conn) serveRequest(x *exchange) (keep bool) {
	now := time.Now()
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	r := x.request(ctx, c)
	c.mu.Lock()
	c.cancel, c.since, c.pipe = cancel, now, c.r < c.w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cancel = nil
		c.mu.Unlock()
	}()
	c.armWrite(now, c.s.fallback.WriteTimeout)

	w := &x.resp
	w.init(c, r)
	defer func() {
		if p := recover(); p != nil {
			keep = false
			if p != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.logf("http: panic serving %v: %v\n%s", c.remote, p, buf)
			}
		}
	}()
	c.s.fallback.Handler.ServeHTTP(w, r)
	return w.finish()
}

// exchange is one request with its answer: one allocation for the parsed head's fields and the
// ResponseWriter.
type exchange struct {
	method, target, host string
	url                  *url.URL
	close                bool
	header               http.Header
	resp                 response
}

// proto is the request every request is a copy of (WithContext is the one way to set a
// request's context, and it copies).
var proto = http.Request{Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody}

func (x *exchange) request(ctx context.Context, c *conn) *http.Request {
	r := proto.WithContext(ctx)
	r.Method, r.RequestURI, r.Host, r.Close = x.method, x.target, x.host, x.close
	r.Header = x.header
	r.RemoteAddr = c.remote
	r.URL = x.url
	return r
}

// A verdict is what parse makes of the bytes read so far.
type verdict int

const (
	needMore verdict = iota // no line is wrong yet, but the head is not whole
	ordinary                // a whole head, of a request this loop serves
	foreign                 // not an ordinary request: net/http reads the same bytes and decides
)

// parse reads the request head at the start of b into x and returns its length through the
// blank line. Each line is judged as soon as it is whole, as net/http judges it, so a bad
// request line is handed over (and refused there) without waiting for the rest of the head.
func (x *exchange) parse(b []byte, maxValues int) (int, verdict) {
	line, rest, v := cutLine(b)
	if v != ordinary {
		return 0, v
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 || !httpsyntax.IsToken(line[:sp1]) {
		return 0, foreign
	}
	method := line[:sp1]
	if string(method) == http.MethodConnect || string(method) == "PRI" {
		return 0, foreign
	}
	target, version, ok := bytes.Cut(line[sp1+1:], []byte{' '})
	if !ok || string(version) != "HTTP/1.1" || len(target) == 0 || target[0] != '/' {
		return 0, foreign
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return 0, foreign
		}
	}

	// First the whole head is checked, then the names are made canonical in place: a head
	// handed over is the bytes as they came.
	var fields [maxHeaderLines][4]int // name start, name end, value start, value end: offsets into b
	n, hosts, host, closing := 0, 0, [2]int{}, false
	off := len(b) - len(rest)
	for {
		line, next, v := cutLine(rest)
		if v != ordinary {
			return 0, v
		}
		if len(line) == 0 {
			break
		}
		if n == maxHeaderLines || n+hosts == maxValues || line[0] == ' ' || line[0] == '\t' {
			return 0, foreign // obs-fold, or more header lines than a client sends or the fallback takes
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !httpsyntax.IsToken(line[:colon]) {
			return 0, foreign
		}
		vs, ve := colon+1, len(line)
		for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
			vs++
		}
		for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
			ve--
		}
		if !httpsyntax.ValidFieldValue(line[vs:ve]) {
			return 0, foreign
		}
		switch name := line[:colon]; {
		case equalFold(name, "Host"):
			hosts++
			host = [2]int{off + vs, off + ve}
			if !validHost(line[vs:ve]) {
				return 0, foreign
			}
		case equalFold(name, "Content-Length"), equalFold(name, "Transfer-Encoding"), equalFold(name, "Expect"),
			equalFold(name, "Upgrade"), equalFold(name, "Http2-Settings"), equalFold(name, "Trailer"):
			return 0, foreign // a body, or a protocol feature: net/http's rules
		default:
			if equalFold(name, "Connection") && hasToken(line[vs:ve], "close") {
				closing = true
			}
			fields[n] = [4]int{off, off + colon, off + vs, off + ve}
			n++
		}
		off += len(line) + 2
		rest = next
	}
	end := off + 2
	if hosts != 1 {
		return 0, foreign
	}
	u, err := url.ParseRequestURI(string(target))
	if err != nil {
		return 0, foreign
	}
	for _, f := range fields[:n] {
		canonicalize(b[f[0]:f[1]])
	}

	s := string(b[:end]) // one string for every name and value
	x.method = s[:sp1]
	x.target = s[sp1+1 : sp1+1+len(target)]
	x.host = s[host[0]:host[1]]
	x.url = u
	x.close = closing
	x.header = make(http.Header, n)
	values := make([]string, n)
	for i, f := range fields[:n] {
		name, v := s[f[0]:f[1]], s[f[2]:f[3]]
		if have, ok := x.header[name]; ok {
			x.header[name] = append(have, v)
			continue
		}
		values[i] = v
		x.header[name] = values[i : i+1 : i+1]
	}
	// As net/http: an HTTP/1.0 cache's Pragma: no-cache is also the HTTP/1.1 Cache-Control.
	if p := x.header["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := x.header["Cache-Control"]; !ok {
			x.header["Cache-Control"] = []string{"no-cache"}
		}
	}
	return end, ordinary
}

// cutLine cuts b at its first CRLF: needMore when b holds no LF yet, foreign for a bare LF or
// a CR inside the line.
func cutLine(b []byte) (line, rest []byte, v verdict) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, needMore
	}
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, foreign
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, foreign
	}
	return line, b[i+1:], ordinary
}

// validHost reports whether a Host value is a plain host[:port]: letters, digits, '.', '-',
// '_', ':' and the brackets of an IPv6 literal. Anything else (empty, percent-encoded, user
// info) goes to net/http, whose rule (httpguts.ValidHostHeader) is wider.
func validHost(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == '_', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}

// equalFold reports whether b is s in any ASCII case, without converting either.
func equalFold[T string | []byte](b T, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasToken reports whether the comma-separated list v holds tok, in any case.
func hasToken[T string | []byte](v T, tok string) bool {
	for start := 0; start <= len(v); {
		end := start
		for end < len(v) && v[end] != ',' {
			end++
		}
		i, j := start, end
		for i < j && (v[i] == ' ' || v[i] == '\t') {
			i++
		}
		for j > i && (v[j-1] == ' ' || v[j-1] == '\t') {
			j--
		}
		if equalFold(v[i:j], tok) {
			return true
		}
		start = end + 1
	}
	return false
}

// hasTokens is hasToken over several header values.
func hasTokens(vs []string, tok string) bool {
	for _, v := range vs {
		if hasToken(v, tok) {
			return true
		}
	}
	return false
}

// canonicalize makes a header name (a token) canonical in place, as
// textproto.CanonicalMIMEHeaderKey does: upper case at the start and after each '-'.
func canonicalize(b []byte) {
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		} else if !upper && 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
}

func (s *Server) maxHeaderBytes() int {
	n := s.fallback.MaxHeaderBytes
	if n <= 0 {
		n = http.DefaultMaxHeaderBytes
	}
	return n + 4096 // net/http's slack for its buffer
}

// headerTimeout and idleTimeout are net/http's: ReadTimeout when unset, none when negative.
func (s *Server) headerTimeout() time.Duration {
	if d := s.fallback.ReadHeaderTimeout; d != 0 {
		return d
	}
	return s.fallback.ReadTimeout
}

func (s *Server) idleTimeout() time.Duration {
	if d := s.fallback.IdleTimeout; d != 0 {
		return d
	}
	return s.fallback.ReadTimeout
}
