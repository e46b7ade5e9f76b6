// Package proxy is the gateway's proxy listener handler: it identifies a legacy v1 caller by its
// x-api-key, decides the Academy v2 scope from the real method, finds the user's access token
// (refreshing it when due), and forwards the request with httputil.ReverseProxy, injecting
// Authorization: Bearer. Gateway errors are JSON with the codes of docs/reference.md §4 step 6; upstream
// answers pass through unchanged.
package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/httperr"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// Tokens is what the proxy needs of the token manager.
type Tokens interface {
	// LookupKey returns the record of an API key, or tokens.ErrUnknownKey.
	LookupKey(ctx context.Context, key string) (tokens.APIKey, error)
	// Connection returns the user's connection, or tokens.ErrNotConnected.
	Connection(ctx context.Context, user string) (tokens.Connection, error)
	// Token returns c, or c refreshed when its access token is (nearly) expired.
	Token(ctx context.Context, c tokens.Connection) (tokens.Connection, bool, error)
	// Rejected returns a connection with another access token after the upstream refused c's.
	Rejected(ctx context.Context, c tokens.Connection) (tokens.Connection, error)
}

// Options configure a Handler.
type Options struct {
	// Upstream is the Academy v2 base URL; the request path (after StripPrefixes) is appended.
	Upstream *url.URL
	// StripPrefixes are removed from the start of request paths, first match wins.
	StripPrefixes []string
	// StaticUser, when set, is the user of every request (sidecar mode); x-api-key is ignored.
	StaticUser string
	// Transport sends upstream requests; nil: NewUpstreamTransport(Upstream, 30s).
	Transport http.RoundTripper
	// Metrics receives request metrics; required.
	Metrics *metrics.Metrics
	// Logger receives one access line per request; nil: no logs.
	Logger *zap.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// MaxBodyBytes is the largest request body forwarded (server.max_body_bytes); larger ones
	// get 413 payload_too_large. Zero: no limit.
	MaxBodyBytes int64
}

// MaxReplayBody is the largest request body kept for a replay after an upstream 401.
const MaxReplayBody = 1 << 20

// Handler is the proxy listener's handler for everything but onboarding.
type Handler struct {
	decider
	opts Options
	rp   *httputil.ReverseProxy
	base string // escaped path of the upstream base, without a trailing slash
	ids  *requestIDs
}

// New returns a Handler forwarding to opts.Upstream.
func New(tok Tokens, opts Options) *Handler {
	if opts.Transport == nil {
		opts.Transport = NewUpstreamTransport(opts.Upstream, 30*time.Second)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{decider: newDecider(tok, opts.StripPrefixes, opts.StaticUser), opts: opts, ids: newRequestIDs(),
		base: strings.TrimSuffix(opts.Upstream.EscapedPath(), "/")}
	h.rp = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      &replayTransport{next: opts.Transport, tokens: tok, m: opts.Metrics, now: opts.Now},
		ErrorHandler:   h.proxyError,
		ModifyResponse: refuseUpgrade,
		BufferPool:     &bufferPool{},
		ErrorLog:       zap.NewStdLog(opts.Logger.Named("reverseproxy")),
	}
	return h
}

// exchange is the per-request state shared by the handler, the transport and the access log.
type exchange struct {
	accessLine
	replay     []byte // the request body, when small enough to send again
	replayable bool

	// Allocated with the exchange, so a request costs one allocation for all three.
	sw      statusWriter
	headers [5]string // values of the headers the gateway sets (rewrite), sliced one each
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

// ServeHTTP implements docs/reference.md §4 for one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.opts.Now()
	x := &exchange{accessLine: accessLine{requestID: h.ids.from(r.Header.Get("X-Request-Id")), proxied: true}}
	x.sw.ResponseWriter = w
	sw := &x.sw
	x.headers[0] = x.requestID
	sw.Header()["X-Request-Id"] = x.headers[0:1:1] // shared with the upstream request's
	defer func() {
		// ReverseProxy aborts a response it cannot finish (a caller cut off for not reading,
		// an upstream that broke off) with a panic the server recovers: log and count it.
		if p := recover(); p != nil {
			x.outcome = metrics.OutcomeUpstreamError
			h.finish(sw, r, x, start)
			panic(p)
		}
	}()
	if err := limitBody(w, r, h.opts.MaxBodyBytes); err != nil {
		h.fail(sw, x, err)
	} else if err := h.serve(sw, r, x); err != nil {
		h.fail(sw, x, err)
	}
	h.finish(sw, r, x, start)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, x *exchange) error {
	ctx := r.Context()
	if err := h.decide(ctx, r.Method, r.URL.EscapedPath(), r.Header.Values("X-Api-Key"), &x.decision); err != nil {
		return err
	}
	if err := keepForReplay(r, x); err != nil {
		return badRequest("The request body could not be read.", err)
	}
	h.rp.ServeHTTP(w, r.WithContext(context.WithValue(ctx, exchangeKey{}, x)))
	return nil
}

// keepForReplay buffers a request body of at most MaxReplayBody so that it can be sent again
// after a reactive refresh; a larger body streams and is never replayed.
func keepForReplay(r *http.Request, x *exchange) error {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		x.replayable = true
		return nil
	}
	if r.ContentLength > MaxReplayBody {
		return nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, MaxReplayBody+1))
	if err != nil {
		return err
	}
	if len(buf) > MaxReplayBody { // chunked and large: stream what was read, then the rest
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		return nil
	}
	x.replay, x.replayable = buf, true
	r.ContentLength = int64(len(buf))
	r.Body = io.NopCloser(bytes.NewReader(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	return nil
}

// overrideHeaders (canonical forms) could make an upstream act on another method than the one whose scope was
// checked; spoofable URL headers could make it act on another path. None is ever forwarded.
var overrideHeaders = []string{
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
	"X-Original-Url", "X-Rewrite-Url", "X-Forwarded-Uri", "X-Forwarded-Path", "X-Forwarded-Prefix",
	"X-Api-Key", "Authorization",
}

// rewrite builds the upstream request. ReverseProxy has already removed hop-by-hop headers
// (including any named by Connection) and inbound X-Forwarded-*, so the Authorization set here
// survives whatever the caller sent.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeFrom(pr.In.Context())
	for _, name := range overrideHeaders {
		delete(pr.Out.Header, name) // canonical already: skips Del's re-canonicalization
	}
	u := h.opts.Upstream
	raw := h.base + x.path
	path, _ := url.PathUnescape(raw) // cleanPath accepted raw, so it unescapes
	pr.Out.URL.Scheme, pr.Out.URL.Host = u.Scheme, u.Host
	pr.Out.URL.Path, pr.Out.URL.RawPath = path, raw
	pr.Out.Host = ""
	pr.Out.Trailer = nil // request trailers are never forwarded (issue 14 item 2)
	setForwarded(pr, x)
}

// setForwarded sets what httputil.ProxyRequest.SetXForwarded sets (X-Forwarded-For from the
// peer address, X-Forwarded-Host, X-Forwarded-Proto; ReverseProxy removed the inbound ones
// before Rewrite, so there is no prior X-Forwarded-For to append to), plus X-Request-Id and
// Authorization, with every value sliced from the exchange's one array instead of a []string
// allocated per header (4 allocations per request fewer).
func setForwarded(pr *httputil.ProxyRequest, x *exchange) {
	h := pr.Out.Header
	v := &x.headers
	// v[0] is the request id, set by ServeHTTP.
	h["X-Request-Id"] = v[0:1:1]
	v[1] = "Bearer " + x.conn.AccessToken
	h["Authorization"] = v[1:2:2]
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		v[2] = ip
		h["X-Forwarded-For"] = v[2:3:3]
	} else {
		delete(h, "X-Forwarded-For")
	}
	v[3] = pr.In.Host
	h["X-Forwarded-Host"] = v[3:4:4]
	v[4] = "http"
	if pr.In.TLS != nil {
		v[4] = "https"
	}
	h["X-Forwarded-Proto"] = v[4:5:5]
}

// proxyError is the ReverseProxy's ErrorHandler: transport failures and errors of the replay
// transport end up here.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	h.fail(w, exchangeFrom(r.Context()), err)
}

func (h *Handler) fail(w http.ResponseWriter, x *exchange, err error) {
	e, outcome := classify(err)
	x.outcome = outcome
	if e.Status >= 500 && e.Err != nil {
		h.opts.Logger.Warn("request failed", zap.String("request_id", x.requestID), zap.String("code", string(e.Code)), zap.Error(e.Err))
	}
	httperr.Write(w, e, x.requestID)
}

// copyBufferSize is the size of the buffers that copy response bodies to callers. Academy
// answers are JSON of a few KiB; ReverseProxy's default of 32 KiB per response in flight cost
// 8 MiB at 256 concurrent requests and 32 MiB at 1,000. Larger bodies still stream, in 8 KiB
// reads (each at most a syscall on either side).
const copyBufferSize = 8 << 10

// bufferPool recycles ReverseProxy's copy buffers. It pools array pointers, which a slice
// converts to without allocating (a *[]byte would cost an allocation per Put).
type bufferPool struct{ p sync.Pool }

func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[copyBufferSize]byte); ok {
		return b[:]
	}
	return new([copyBufferSize]byte)[:]
}

func (bp *bufferPool) Put(b []byte) {
	if cap(b) >= copyBufferSize {
		bp.p.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
	}
}
