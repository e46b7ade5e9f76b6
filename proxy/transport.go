package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// NewTransport returns the upstream transport: a keep-alive pool sized for hundreds of
// concurrent callers on one upstream host, and timeouts on every phase before the response
// headers (timeout bounds the wait for them; bodies stream for as long as they take).
func NewTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
	}
}

// replayTransport sends the upstream request and, when the Academy answers 401 to a token the
// gateway believed valid, gets another token and sends the request once more (docs/reference.md §4 step 5).
type replayTransport struct {
	next   http.RoundTripper
	tokens Tokens
	m      *metrics.Metrics
	now    func() time.Time
}

func (t *replayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	x := exchangeFrom(req.Context())
	resp, err := t.send(req, x)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !x.replayable {
		return resp, err
	}
	fresh, rerr := t.tokens.Rejected(req.Context(), x.conn)
	if rerr != nil {
		if errors.Is(rerr, tokens.ErrReauthRequired) {
			resp.Body.Close()
			return nil, rerr
		}
		return resp, nil // no other token to try: the Academy's 401 stands
	}
	resp.Body.Close()
	x.conn, x.refreshed = fresh, true
	retry := req.Clone(req.Context())
	retry.Header.Set("Authorization", "Bearer "+fresh.AccessToken)
	if x.replay != nil {
		retry.Body = io.NopCloser(bytes.NewReader(x.replay))
	}
	return t.send(retry, x)
}

// send makes one upstream round trip and records its duration.
func (t *replayTransport) send(req *http.Request, x *exchange) (*http.Response, error) {
	began := t.now()
	resp, err := t.next.RoundTrip(req)
	d := t.now().Sub(began)
	x.upstream += d
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.m.UpstreamDuration.WithLabelValues(methodLabel(req.Method), code).Observe(d.Seconds())
	return resp, err
}

// methodLabel bounds the method label to the methods HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodTrace, http.MethodConnect:
		return m
	}
	return "OTHER"
}
