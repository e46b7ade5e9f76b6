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
	status := w.status
	if status == 0 {
		status = httperr.StatusClientClosed
	}
	if x.outcome == "" {
		x.outcome = metrics.OutcomeForwarded
	}
	d := h.opts.Now().Sub(start)
	method := methodLabel(r.Method)
	h.opts.Metrics.Requests.WithLabelValues(method, statusLabel(status), x.outcome).Inc()
	h.opts.Metrics.RequestDuration.WithLabelValues(method, x.outcome).Observe(d.Seconds())
	if ce := h.opts.Logger.Check(zap.InfoLevel, "request"); ce != nil {
		ce.Write(
			zap.String("request_id", x.requestID),
			zap.String("user", x.user),
			zap.String("key_id", x.keyID),
			zap.String("method", r.Method),
			zap.String("path", r.URL.EscapedPath()),
			zap.Int("status", status),
			zap.String("outcome", x.outcome),
			zap.Duration("duration", d),
			zap.Duration("upstream_duration", x.upstream),
			zap.Bool("refreshed", x.refreshed),
		)
	}
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
