package h1server

import (
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/academy-gateway/academy-gateway/internal/httpsyntax"
)

// stageSize is how much of a body is held back before the head is written, as net/http holds
// back: a body that ends within it gets a Content-Length, a longer one (without a
// Content-Length from the handler) is sent chunked.
const stageSize = 2 << 10

// outBufferSize is the size of the pooled buffers a response is written through: a head and a
// held-back body fit in one, so a short answer is one write.
const outBufferSize = 4 << 10

// bufs holds *[]byte of cap outBufferSize: a buffer belongs to a response only while it is
// being written, so idle connections keep none.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, outBufferSize); return &b }}

func getBuf() *[]byte { return bufs.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) == outBufferSize {
		*b = (*b)[:0]
		bufs.Put(b)
	}
}

// response is the http.ResponseWriter of one request, with net/http's rules: the header is
// taken as it is at WriteHeader (later changes only make trailers); Content-Length when the
// length is known (set by the handler, or a body that ended within stageSize), else chunked,
// with trailers; no body for HEAD, 1xx, 204 and 304 (and no Content-Length there, nor
// Content-Type for 304); Date and a sniffed Content-Type when the handler set none;
// Connection: close when the caller or the handler asked for it, the server shuts down, or the
// body did not match its Content-Length.
type response struct {
	c      *conn
	req    *http.Request
	header http.Header
	head   bool // a HEAD request: no body is sent

	status    int   // the final status, 0 before WriteHeader
	cl        int64 // the answer's Content-Length, -1: none (yet)
	written   int64 // body bytes the handler wrote
	committed bool  // the whole head is in out
	chunked   bool
	close     bool
	err       error // the first write error: every later write fails with it

	// What the handler's header said at WriteHeader.
	clSet      bool     // a Content-Length, valid or not
	typed      bool     // a Content-Type (possibly empty: no sniffing)
	encoded    bool     // a non-empty Content-Encoding: no sniffing
	te         string   // a Transfer-Encoding
	dated      bool     // a Date
	connection []string // its Connection values
	trailers   []string // names declared in Trailer
	prefixed   bool     // a name with http.TrailerPrefix: trailers follow

	stage *[]byte // the held-back body, before the head is whole
	out   *[]byte // what is to be written to the connection
}

func (w *response) init(c *conn, r *http.Request) {
	w.c, w.req, w.head, w.cl = c, r, r.Method == http.MethodHead, -1
	w.header = make(http.Header)
}

// Header returns the answer's header map.
func (w *response) Header() http.Header { return w.header }

// WriteHeader writes a 1xx answer at once. For a final status it takes the header as it is
// now; the head goes out with the first body bytes that do not fit stageSize, at Flush, or when
// the handler returns.
func (w *response) WriteHeader(code int) {
	if w.status != 0 {
		return // net/http logs a superfluous call; the first status stands either way
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.informational(code)
		return
	}
	w.status = code
	h := w.header
	if _, w.clSet = h["Content-Length"]; w.clSet {
		v := h.Get("Content-Length")
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			w.cl = n
		} else {
			w.c.s.logf("http: invalid Content-Length of %q", v)
		}
	}
	_, w.typed = h["Content-Type"]
	w.encoded = h.Get("Content-Encoding") != ""
	w.te = h.Get("Transfer-Encoding")
	if w.te != "" && w.cl != -1 {
		w.c.s.logf("http: WriteHeader called with both Transfer-Encoding of %q and a Content-Length of %d", w.te, w.cl)
		w.cl = -1
	}
	_, w.dated = h["Date"]
	w.connection = h["Connection"]
	for _, v := range h["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = http.CanonicalHeaderKey(textproto.TrimString(name)); name != "" && !notTrailer(name) {
				w.trailers = append(w.trailers, name)
			}
		}
	}
	w.out = getBuf()
	out := appendStatus(*w.out, code)
	*w.out = appendHeader(out, h, func(k string) bool {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			w.prefixed = true
			return false
		}
		switch k {
		case "Content-Length", "Transfer-Encoding", "Connection":
			return false
		case "Content-Type":
			return code != http.StatusNotModified
		}
		return true
	})
}

// informational writes a 1xx answer with the header set so far.
func (w *response) informational(code int) {
	if w.err != nil {
		return
	}
	b := getBuf()
	*b = appendStatus(*b, code)
	*b = appendHeader(*b, w.header, func(k string) bool { return k != "Content-Length" && k != "Transfer-Encoding" })
	*b = append(*b, "\r\n"...)
	_, w.err = w.c.nc.Write(*b)
	putBuf(b)
}

func (w *response) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.cl != -1 && w.written > w.cl {
		return 0, http.ErrContentLength
	}
	if w.err != nil {
		return 0, w.err
	}
	if !w.committed {
		if w.stage == nil {
			w.stage = getBuf()
		}
		if len(*w.stage)+len(p) <= stageSize {
			*w.stage = append(*w.stage, p...)
			return len(p), nil
		}
		w.commit(false, p)
	}
	if w.head {
		return len(p), nil
	}
	return len(p), w.send(p)
}

// send adds p to the body, framed, writing out when it is full.
func (w *response) send(p []byte) error {
	out := w.out
	if w.chunked {
		*out = strconv.AppendInt(*out, int64(len(p)), 16)
		*out = append(*out, "\r\n"...)
	}
	if len(*out)+len(p) > cap(*out) {
		if len(p) >= cap(*out)/2 {
			// What is buffered and p in one write, without copying p.
			if w.err == nil {
				bufs := net.Buffers{*out, p}
				if w.chunked {
					bufs = append(bufs, crlf)
				}
				_, w.err = bufs.WriteTo(w.c.nc)
			}
			*out = (*out)[:0]
			if w.err != nil {
				w.close = true
			}
			return w.err
		}
		if w.flush(); w.err != nil {
			return w.err
		}
	}
	*out = append(*out, p...)
	if w.chunked {
		*out = append(*out, "\r\n"...)
	}
	return nil
}

var crlf = []byte("\r\n")

// flush writes out to the connection.
func (w *response) flush() {
	if w.err == nil && len(*w.out) > 0 {
		_, w.err = w.c.nc.Write(*w.out)
	}
	*w.out = (*w.out)[:0]
	if w.err != nil {
		w.close = true
	}
}

// FlushError writes the head and the body so far to the connection (http.ResponseController).
func (w *response) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(false, nil)
	}
	w.flush()
	return w.err
}

// Flush is FlushError for http.Flusher.
func (w *response) Flush() { _ = w.FlushError() }

// SetWriteDeadline sets the connection's write deadline (http.ResponseController) to between t
// and a tenth of the time to t later (armRead's rule): each update costs a runtime timer update,
// and Harden asks for one per request.
func (w *response) SetWriteDeadline(t time.Time) error {
	c := w.c
	now := time.Now()
	if !t.After(now) { // none, or one that has passed already: as asked
		c.wdl = t
		return c.nc.SetWriteDeadline(t)
	}
	want, ok := rearm(c.wdl, now, t.Sub(now))
	if !ok {
		return nil
	}
	c.wdl = want
	return c.nc.SetWriteDeadline(want)
}

// SetReadDeadline sets the connection's read deadline (http.ResponseController); the next
// request's wait sets its own.
func (w *response) SetReadDeadline(t time.Time) error {
	w.c.rdl = t
	return w.c.nc.SetReadDeadline(t)
}

// commit completes the head in out and adds the held-back body. done: the handler has
// returned, so a held-back body is the whole body; next is the write that did not fit (its
// start is sniffed with the held-back bytes, as net/http sniffs the first write it sends).
func (w *response) commit(done bool, next []byte) {
	w.committed = true
	var staged []byte
	if w.stage != nil {
		staged = *w.stage
	}
	body := bodyAllowed(w.status)
	trailers := w.trailers != nil || w.prefixed
	if done && body && !w.clSet && w.te == "" && !trailers && (!w.head || len(staged) > 0) {
		w.cl = int64(len(staged))
	}
	out := *w.out
	if body && !w.typed && !w.encoded && w.te == "" && len(staged)+len(next) > 0 {
		sniff := staged
		if len(sniff) < sniffLen && len(next) > 0 {
			var b [sniffLen]byte
			n := copy(b[:], staged)
			n += copy(b[n:], next)
			sniff = b[:n]
		}
		out = appendField(out, "Content-Type", http.DetectContentType(sniff))
	}
	switch {
	case !body:
		w.cl = -1
	case w.head:
	case w.cl != -1:
	case w.te == "identity":
		w.close = true // the body ends where the connection does
	default:
		w.chunked = true
	}
	switch {
	case w.cl != -1:
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, w.cl, 10)
		out = append(out, "\r\n"...)
	case w.chunked:
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	if !w.dated {
		out = appendField(out, "Date", httpDate())
	}
	closeAsked := hasTokens(w.connection, "close")
	if w.req.Close || closeAsked || w.c.s.shutting.Load() {
		w.close = true
	}
	if w.close && !closeAsked {
		out = append(out, "Connection: close\r\n"...)
	} else {
		for _, v := range w.connection {
			out = appendField(out, "Connection", v)
		}
	}
	*w.out = append(out, "\r\n"...)
	if w.stage != nil {
		if len(staged) > 0 && body && !w.head {
			_ = w.send(staged)
		}
		putBuf(w.stage)
		w.stage = nil
	}
}

// sniffLen is how much of a body http.DetectContentType reads.
const sniffLen = 512

// finish completes the answer after the handler returned and reports whether the connection
// may carry another request.
func (w *response) finish() bool {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(true, nil)
	}
	if w.chunked {
		out := append(*w.out, "0\r\n"...)
		out = appendTrailers(out, w.header, w.trailers)
		*w.out = append(out, "\r\n"...)
	}
	w.flush()
	putBuf(w.out)
	w.out = nil
	if !w.head && bodyAllowed(w.status) && w.cl != -1 && w.written != w.cl {
		w.close = true // too short: the caller could not tell where this answer ends
	}
	return !w.close
}

// bodyAllowed reports whether an answer with status may have a body (RFC 9110 §6.4.1).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

func appendStatus(b []byte, code int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}

// appendHeader writes the names of h that keep accepts, in name order as net/http does:
// names that are not tokens are skipped, CR and LF in values become spaces.
func appendHeader(b []byte, h http.Header, keep func(string) bool) []byte {
	var keysArr [32]string
	keys := keysArr[:0]
	for k := range h {
		if keep(k) && httpsyntax.IsToken(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			b = appendField(b, k, v)
		}
	}
	return b
}

func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	start := len(b)
	b = append(b, strings.Trim(v, " \t")...)
	for i := start; i < len(b); i++ {
		if b[i] == '\r' || b[i] == '\n' {
			b[i] = ' '
		}
	}
	return append(b, "\r\n"...)
}

// notTrailer reports whether a header may not be sent as a trailer (RFC 9110 §6.5.1; the
// list of httpguts.ValidTrailerHeader, which net/http applies to declared trailers).
func notTrailer(name string) bool {
	switch name {
	case "Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Length", "Content-Range",
		"Content-Type", "Expect", "Host", "Keep-Alive", "Max-Forwards", "Pragma", "Proxy-Authenticate",
		"Proxy-Authorization", "Proxy-Connection", "Range", "Realm", "Te", "Trailer", "Transfer-Encoding",
		"Www-Authenticate":
		return true
	}
	return false
}

// appendTrailers writes the trailer section: the declared names' values, and every name set
// with http.TrailerPrefix.
func appendTrailers(b []byte, h http.Header, declared []string) []byte {
	for _, k := range declared {
		if httpsyntax.IsToken(k) {
			for _, v := range h[k] {
				b = appendField(b, k, v)
			}
		}
	}
	for k, vs := range h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && httpsyntax.IsToken(name) {
			for _, v := range vs {
				b = appendField(b, name, v)
			}
		}
	}
	return b
}

// date caches the Date header's value for the second it names.
var date atomic.Pointer[struct {
	sec int64
	v   string
}]

func httpDate() string {
	now := time.Now()
	if d := date.Load(); d != nil && d.sec == now.Unix() {
		return d.v
	}
	d := &struct {
		sec int64
		v   string
	}{now.Unix(), now.UTC().Format(http.TimeFormat)}
	date.Store(d)
	return d.v
}
