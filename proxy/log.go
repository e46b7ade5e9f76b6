package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/academy-gateway/academy-gateway/httperr"
	"github.com/academy-gateway/academy-gateway/metrics"
)

// statusWriter records the status a handler wrote. Unwrap lets http.ResponseController reach
// the underlying writer's Flush, which streaming responses need.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish records the request's metrics and writes its access line (docs/reference.md §8). Only ids, never
// keys or tokens, and the path without its query, which may carry secrets.
func (h *Handler) finish(w *statusWriter, r *http.Request, x *exchange, start time.Time) {
	x.status = w.status
	if x.status == 0 {
		x.status = httperr.StatusClientClosed
	}
	if x.outcome == "" {
		x.outcome = metrics.OutcomeForwarded
	}
	x.duration = h.opts.Now().Sub(start)
	method := methodLabel(r.Method)
	h.opts.Metrics.Requests.WithLabelValues(method, statusLabel(x.status), x.outcome).Inc()
	h.opts.Metrics.RequestDuration.WithLabelValues(method, x.outcome).Observe(x.duration.Seconds())
	if ce := h.opts.Logger.Check(zap.InfoLevel, "request"); ce != nil {
		x.method, x.urlPath = r.Method, r.URL.EscapedPath()
		ce.Write(zap.Inline(&x.accessLine))
	}
}

// accessLine is what the access line of a request or a forward-auth check says (docs/reference.md
// §8), kept with the rest of the request's state. Written as one inline field it costs no
// allocation, where ten zap.Fields are a 640-byte slice per request.
type accessLine struct {
	requestID string
	decision
	method   string
	urlPath  string // the caller's path (forward-auth: of X-Forwarded-Uri), without the query
	status   int
	outcome  string
	duration time.Duration
	upstream time.Duration // time spent waiting for the Academy
	proxied  bool          // a proxied request, whose line has upstream_duration
}

// MarshalLogObject writes the line's fields, in the order docs/reference.md §8 lists them.
func (l *accessLine) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("request_id", l.requestID)
	enc.AddString("user", l.user)
	enc.AddString("key_id", l.keyID)
	enc.AddString("method", l.method)
	enc.AddString("path", l.urlPath)
	enc.AddInt64("status", int64(l.status))
	enc.AddString("outcome", l.outcome)
	enc.AddDuration("duration", l.duration)
	if l.proxied {
		enc.AddDuration("upstream_duration", l.upstream)
	}
	enc.AddBool("refreshed", l.refreshed)
	return nil
}

// statusLabel is strconv.Itoa(status) without an allocation for the statuses most answers
// have.
func statusLabel(status int) string {
	switch status {
	case http.StatusOK:
		return "200"
	case http.StatusCreated:
		return "201"
	case http.StatusNoContent:
		return "204"
	case http.StatusNotModified:
		return "304"
	case http.StatusBadRequest:
		return "400"
	case http.StatusUnauthorized:
		return "401"
	case http.StatusForbidden:
		return "403"
	case http.StatusNotFound:
		return "404"
	}
	return strconv.Itoa(status)
}

// requestIDs issues request ids: a random per-process prefix and a counter, unique and cheap.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &requestIDs{prefix: hex.EncodeToString(b) + "-"}
}

// from keeps a caller's X-Request-Id when it is short and plain, else issues a new one.
func (ids *requestIDs) from(in string) string {
	if in != "" && len(in) <= 64 && plainID(in) {
		return in
	}
	var b strings.Builder // one allocation, where concatenating a formatted number takes two
	b.Grow(len(ids.prefix) + 13)
	b.WriteString(ids.prefix)
	var num [13]byte
	b.Write(strconv.AppendUint(num[:0], ids.n.Add(1), 36))
	return b.String()
}

func plainID(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
