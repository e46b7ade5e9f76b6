package proxy

import (
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/httperr"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/scope"
)

// HardenOptions configure Harden.
type HardenOptions struct {
	// WriteStall is how long one response write may make no progress (a caller that stopped
	// reading) before the connection is cut; zero: writes are not bounded. Each write re-arms
	// it, so a long response that keeps flowing is never cut.
	WriteStall time.Duration
	// Metrics counts the requests Harden refuses itself; nil: not counted.
	Metrics *metrics.Metrics
	// Logger receives one access line per refused request; nil: no logs.
	Logger *zap.Logger
}

// Harden wraps the root handler of a listener that faces callers (the proxy listener, the
// forward-auth listener), before any router sees the request, against the protocol abuse of
// issue 14. It refuses request targets that are not an origin-form path (CONNECT's authority
// form, "*", an absolute URI without a path) with JSON; strips upgrade requests (no tunnel can
// ever open, so nothing can pass the per-request checks inside one); drops request trailers;
// closes the connection after a request that came with a Transfer-Encoding (RFC 9112 §6.1: the
// handler cannot see a Content-Length sent beside it), after an upgrade request, and after any
// answer written before the request body was read to its end (no waiting to drain a body that
// never comes); and bounds every response write by WriteStall.
func Harden(next http.Handler, o HardenOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &hardened{next: next, o: o, ids: newRequestIDs()}
}

type hardened struct {
	next http.Handler
	o    HardenOptions
	ids  *requestIDs
}

func (h *hardened) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The controller by value: NewResponseController inlines, so it costs no allocation.
	hw := &hardWriter{ResponseWriter: w, rc: *http.NewResponseController(w), stall: h.o.WriteStall,
		h1: r.ProtoMajor == 1}
	hw.arm(time.Now())
	if len(r.TransferEncoding) > 0 || r.Trailer != nil {
		hw.close = true // RFC 9112 §6.1; issue 14 item 3
		// A shallow copy: the server merges trailers into the request it parsed (r), never
		// into this one, so the trailers stay out of everything downstream, the upstream
		// request included. Only a chunked body has trailers.
		r = r.WithContext(r.Context())
		r.Trailer = nil
	}
	if stripUpgrade(r.Header) {
		hw.close = true // whatever a front proxy believes, this connection carries no tunnel
	}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		hw.body = &eofBody{ReadCloser: r.Body}
		r.Body = hw.body
	}
	if e := checkTarget(r); e != nil {
		hw.close = true
		h.refuse(hw, r, e)
		return
	}
	h.next.ServeHTTP(hw, r)
	if hw.body != nil && !hw.body.eof.Load() {
		// Nobody reads the rest of this body now, but net/http would try to drain it (up to
		// 256 KiB) before closing the connection: for a body that never comes, until
		// read_timeout. An expired read deadline ends that wait at once.
		_ = hw.rc.SetReadDeadline(time.Now())
	}
}

// checkTarget refuses the request-target forms the gateway never forwards: CONNECT's authority
// form (405), the asterisk form of OPTIONS (405) and of any other method (400), and an absolute
// URI without a path (400). Go's router would answer them with a plain-text 404 or, for OPTIONS
// *, a keyless 200.
func checkTarget(r *http.Request) *httperr.Error {
	switch {
	case r.Method == http.MethodConnect:
		return methodNotAllowed(r.Method)
	case r.RequestURI == "*":
		if _, ok := scope.ForRequest(r.Method, "/"); !ok {
			return methodNotAllowed(r.Method)
		}
		return badRequest("The request target * names no resource.", nil)
	case r.URL.Path == "" || r.URL.Path[0] != '/' || r.URL.Opaque != "":
		return badRequest("The request target must be an absolute path.", nil)
	}
	return nil
}

func (h *hardened) refuse(w http.ResponseWriter, r *http.Request, e *httperr.Error) {
	id := h.ids.from(r.Header.Get("X-Request-Id"))
	w.Header().Set("X-Request-Id", id)
	httperr.Write(w, e, id)
	out := outcome(e.Code)
	method := methodLabel(r.Method)
	if h.o.Metrics != nil {
		h.o.Metrics.Requests.WithLabelValues(method, statusLabel(e.Status), out).Inc()
		h.o.Metrics.RequestDuration.WithLabelValues(method, out).Observe(0)
	}
	h.o.Logger.Info("request", zap.String("request_id", id), zap.String("method", r.Method),
		zap.Int("status", e.Status), zap.String("outcome", out))
}

// upgradeHeaders start a protocol switch (RFC 9110 §7.8; HTTP2-Settings goes with h2c).
var upgradeHeaders = []string{"Upgrade", "Http2-Settings"}

// stripUpgrade removes an upgrade request from h: the Upgrade and HTTP2-Settings headers and the
// upgrade token of Connection (its other tokens stay, so the headers they name are still
// removed as hop-by-hop). It reports whether there was anything to remove.
func stripUpgrade(h http.Header) bool {
	found := false
	for _, name := range upgradeHeaders {
		if _, ok := h[name]; ok {
			delete(h, name)
			found = true
		}
	}
	conn, ok := h["Connection"]
	if !ok {
		return found
	}
	var keep []string
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			tok = textproto.TrimString(tok)
			switch {
			case tok == "":
			case strings.EqualFold(tok, "upgrade") || strings.EqualFold(tok, "http2-settings"):
				found = true
			default:
				keep = append(keep, tok)
			}
		}
	}
	if len(keep) == 0 {
		delete(h, "Connection")
	} else {
		h["Connection"] = []string{strings.Join(keep, ", ")}
	}
	return found
}

// errUpgradeRefused is returned by refuseUpgrade for an upstream that switched protocols.
var errUpgradeRefused = errors.New("upstream answered 101 Switching Protocols; the gateway never opens a tunnel")

// refuseUpgrade is the ReverseProxy's ModifyResponse: a 101 from the upstream (which no request
// the gateway forwards asked for) becomes an error, so the two connections are never spliced.
func refuseUpgrade(res *http.Response) error {
	if res.StatusCode == http.StatusSwitchingProtocols {
		return errUpgradeRefused
	}
	return nil
}

// eofBody records whether a request body was read to its end.
type eofBody struct {
	io.ReadCloser
	eof atomic.Bool
}

func (b *eofBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

// hardWriter is the ResponseWriter Harden hands on: it adds Connection: close to the answer when
// the connection must not be reused, and re-arms the write deadline before each write.
type hardWriter struct {
	http.ResponseWriter
	rc      http.ResponseController
	stall   time.Duration
	armed   time.Time // when the write deadline was last set
	body    *eofBody  // nil: the request had no body
	close   bool
	written bool
	// h1 is true for HTTP/1.x. Over HTTP/2 an unread body costs only its stream (RST_STREAM)
	// and Connection: close would end every stream of the connection (GOAWAY), so it is not sent.
	h1 bool
}

// arm gives the next write WriteStall to complete, give or take a tenth: a deadline set less
// than WriteStall/10 ago stays (setting one costs a runtime timer update, and a response's
// header and body writes come microseconds apart).
func (w *hardWriter) arm(now time.Time) {
	if w.stall > 0 && now.Sub(w.armed) >= w.stall/10 {
		_ = w.rc.SetWriteDeadline(now.Add(w.stall))
		w.armed = now
	}
}

func (w *hardWriter) WriteHeader(code int) {
	if code >= 200 && !w.written {
		w.written = true
		// An answer before the body was read to its end (a refusal, an early upstream answer)
		// closes the connection, or the server would first wait to drain a body that may never
		// come (issue 14 item 5).
		if w.h1 && (w.close || (w.body != nil && !w.body.eof.Load())) {
			w.Header().Set("Connection", "close")
		}
	}
	w.arm(time.Now())
	w.ResponseWriter.WriteHeader(code)
}

func (w *hardWriter) Write(b []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	w.arm(time.Now())
	return w.ResponseWriter.Write(b)
}

// FlushError flushes through to the connection under a fresh deadline.
func (w *hardWriter) FlushError() error {
	w.arm(time.Now())
	return w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *hardWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// limitBody enforces max on r's body (docs/reference.md §4 step 6, payload_too_large): a Content-Length over
// max is refused before anything is read; a body without one is cut where it crosses max, and
// the read error (an *http.MaxBytesError) ends the exchange as a 413 (classify). Zero: no limit.
func limitBody(w http.ResponseWriter, r *http.Request, max int64) error {
	if max <= 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	if r.ContentLength > max {
		return tooLarge(max, nil)
	}
	r.Body = http.MaxBytesReader(w, r.Body, max)
	return nil
}

func tooLarge(max int64, err error) *httperr.Error {
	return httperr.Wrap(http.StatusRequestEntityTooLarge, httperr.PayloadTooLarge,
		"The request body is larger than "+strconv.FormatInt(max, 10)+" bytes.", err)
}

// asTooLarge maps a body read that crossed the limit, wherever it surfaced (buffering for a
// replay, or the transport streaming it upstream), to payload_too_large.
func asTooLarge(err error) (*httperr.Error, bool) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(mbe.Limit, err), true
	}
	return nil, false
}
