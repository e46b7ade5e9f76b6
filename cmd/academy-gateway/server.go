package main

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/config"
)

// newServer returns the http.Server of one listener with the server.* limits of docs/reference.md §3: every
// listener (proxy, ops, forward-auth) is built here so none is left without them.
//
// ReadHeaderTimeout bounds the headers and ReadTimeout the whole request, body included (a body
// dripped byte by byte is cut there). WriteTimeout is ReadTimeout too, but it only arms the
// first write of a response: the proxy listener's proxy.Harden re-arms the deadline before every
// write, so a response that keeps flowing is never cut while a caller that stops reading is cut
// after one read_timeout without progress (issue 14 item 5).
// server.max_header_bytes bounds the request line and headers; net/http answers a longer one
// with its own plain-text 431 (docs/security.md lists the parser's own answers).
func newServer(cfg config.Server, h http.Handler, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout.D(),
		ReadTimeout:       cfg.ReadTimeout.D(),
		WriteTimeout:      cfg.ReadTimeout.D(),
		IdleTimeout:       cfg.IdleTimeout.D(),
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		// OPTIONS * would get net/http's own keyless 200; the handlers answer it (405 JSON).
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     zap.NewStdLog(log),
	}
}
