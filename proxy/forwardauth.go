package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/credential"
	"github.com/academy-gateway/academy-gateway/httperr"
	"github.com/academy-gateway/academy-gateway/internal/httpsyntax"
	"github.com/academy-gateway/academy-gateway/metrics"
)

// ForwardAuthPath is the one path of the auth listener: an ingress asks it about each request.
const ForwardAuthPath = "/forward-auth"

// ErrorHeader carries a refusal's JSON body, byte for byte, in a header of the refusal itself.
// nginx's auth_request drops the body of the check's answer, so the shipped nginx configuration
// reads this header to hand the caller the gateway's body (deploy/forward-auth/nginx.conf).
const ErrorHeader = "X-Gateway-Error"

// ForwardAuthOptions configure a ForwardAuth handler.
type ForwardAuthOptions struct {
	// StripPrefixes are removed from the start of checked paths, first match wins; the ingress
	// must strip the same ones before it forwards.
	StripPrefixes []string
	// StaticUser, when set, is the user of every check (sidecar mode); x-api-key is ignored.
	StaticUser string
	// Token, when set, must arrive as X-Gateway-Auth on every check; empty: checks are not
	// authenticated (the auth listener must then be reachable only by the ingress).
	Token string
	// Metrics receives academy_gateway_forward_auth_requests_total; required.
	Metrics *metrics.Metrics
	// Logger receives one access line per check; nil: no logs.
	Logger *zap.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// ForwardAuth answers an ingress's checks on the auth listener (docs/reference.md §4.1): it applies the proxy
// listener's decision (identity, path rules, scope, token) to the request the ingress describes
// in X-Forwarded-Method and X-Forwarded-Uri, and answers 200 with the user's Bearer or the
// proxy's JSON refusal. It never sees the upstream's answer, so it never refreshes reactively.
type ForwardAuth struct {
	decider
	opts   ForwardAuthOptions
	secret credential.Secret
	ids    *requestIDs
}

// NewForwardAuth returns a ForwardAuth deciding with tok.
func NewForwardAuth(tok Tokens, opts ForwardAuthOptions) *ForwardAuth {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &ForwardAuth{
		decider: newDecider(tok, opts.StripPrefixes, opts.StaticUser),
		opts:    opts,
		secret:  credential.NewSecret(opts.Token),
		ids:     newRequestIDs(),
	}
}

// check is one forward-auth check in progress: what is logged and counted about it.
type check struct {
	accessLine // method: X-Forwarded-Method
}

// ServeHTTP answers one check: any method on ForwardAuthPath. Other paths are not checks: they
// get 404 not_found and are neither counted nor logged.
func (f *ForwardAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := f.opts.Now()
	c := &check{accessLine{requestID: f.ids.from(r.Header.Get("X-Request-Id"))}}
	h := w.Header() // canonical names assigned directly: Set would canonicalise each again
	h["X-Request-Id"] = []string{c.requestID}
	h["Cache-Control"] = []string{"no-store"}
	if r.URL.Path != ForwardAuthPath {
		httperr.Write(w, httperr.New(http.StatusNotFound, httperr.NotFound, "The auth listener answers only "+ForwardAuthPath+"."), c.requestID)
		return
	}
	c.status, c.outcome = http.StatusOK, metrics.OutcomeAllowed
	if err := f.check(r, c); err != nil {
		var e *httperr.Error
		e, c.outcome = classify(err) // forbidden is a code and an outcome of its own
		c.status = e.Status
		f.refuse(w, c, e)
	} else {
		h["Authorization"] = []string{"Bearer " + c.conn.AccessToken}
		w.WriteHeader(http.StatusOK)
	}
	c.duration = f.opts.Now().Sub(start)
	f.opts.Metrics.ForwardAuthRequests.WithLabelValues(methodLabel(c.method), statusLabel(c.status), c.outcome).Inc()
	if ce := f.opts.Logger.Check(zap.InfoLevel, "forward-auth check"); ce != nil {
		ce.Write(zap.Inline(&c.accessLine))
	}
}

// check authenticates the ingress, reads the described request and decides about it.
func (f *ForwardAuth) check(r *http.Request, c *check) error {
	methods, uris := r.Header.Values("X-Forwarded-Method"), r.Header.Values("X-Forwarded-Uri")
	if len(methods) > 0 {
		c.method = methods[0] // the label and the log line, even of a refusal
	}
	if f.opts.Token != "" {
		if vals := r.Header.Values("X-Gateway-Auth"); len(vals) != 1 || !f.secret.Matches(vals[0]) {
			return httperr.New(http.StatusForbidden, httperr.Forbidden, "The check lacks the X-Gateway-Auth header this gateway requires.")
		}
	}
	if len(methods) != 1 || len(uris) != 1 || methods[0] == "" || uris[0] == "" {
		return badRequest("A forward-auth check needs exactly one X-Forwarded-Method and one X-Forwarded-Uri header.", nil)
	}
	if !httpsyntax.IsToken(c.method) {
		return badRequest("X-Forwarded-Method is not an HTTP method.", nil)
	}
	path, ok := targetPath(uris[0])
	c.urlPath = path
	if !ok {
		return badRequest("X-Forwarded-Uri is not a request target (an absolute path and an optional query).", nil)
	}
	return f.decide(r.Context(), c.method, path, r.Header.Values("X-Api-Key"), &c.decision)
}

// refuse writes e as the proxy listener would, and its body once more in ErrorHeader.
func (f *ForwardAuth) refuse(w http.ResponseWriter, c *check, e *httperr.Error) {
	if e.Status >= 500 && e.Err != nil {
		f.opts.Logger.Warn("forward-auth check failed", zap.String("request_id", c.requestID), zap.String("code", string(e.Code)), zap.Error(e.Err))
	}
	if e.Status == httperr.StatusClientClosed {
		// The ingress gave up; write a refusal anyway, since a handler that writes nothing
		// answers 200, which an ingress still listening would take for "allowed".
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	b, _ := json.Marshal(httperr.Body{Error: httperr.Detail{Code: e.Code, Message: e.Message, RequestID: c.requestID}})
	w.Header()[ErrorHeader] = []string{string(b)}
	httperr.Write(w, e, c.requestID)
}

// targetPath returns the path of an origin-form request target ("/path?query", RFC 9112 §3.2.1)
// as the ingress received and will forward it, so that the path checked is the path forwarded.
// Anything else (absolute form, white space, control characters, a fragment) is refused; the path
// itself is judged by cleanPath in decide.
func targetPath(uri string) (string, bool) {
	if uri[0] != '/' {
		return uri, false
	}
	p, _, _ := strings.Cut(uri, "?")
	for i := 0; i < len(uri); i++ {
		if c := uri[i]; c <= ' ' || c == 0x7f || c == '#' {
			return p, false
		}
	}
	return p, true
}
