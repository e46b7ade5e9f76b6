package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/h1server"
	"github.com/academy-gateway/academy-gateway/tlsreload"
)

// listenerTLS returns the TLS configuration of the proxy and auth listeners, or nil when
// listen.tls_cert_file is unset. The certificate is re-read when its files change, so a rotation
// (cert-manager swapping a mounted Secret) needs no restart. Files that do not load at start are
// a configuration error.
func (a *app) listenerTLS(opts tlsreload.Options) (*tls.Config, error) {
	l := a.cfg.Listen
	if l.TLSCertFile == "" {
		return nil, nil
	}
	if opts.Logger == nil {
		opts.Logger = a.log.Named("tls")
	}
	cert, err := tlsreload.New(l.TLSCertFile, l.TLSKeyFile, opts)
	if err != nil {
		return nil, usageError{&config.Error{Key: "listen.tls_cert_file", Msg: err.Error()}}
	}
	return cert.TLSConfig(), nil
}

// server is what serve runs on a listener: an http.Server, or one of callerServer's.
type server interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
}

// callerServer returns what serves a listener that faces callers with srv's handler and
// limits: over TLS when tlsConfig is set (the certificate comes from its GetCertificate), else
// h1server's loop, which hands every request that is not an ordinary bodiless HTTP/1.1 one to
// srv.
func callerServer(srv *http.Server, tlsConfig *tls.Config) server {
	if tlsConfig != nil {
		srv.TLSConfig = tlsConfig
		return tlsServer{srv}
	}
	return h1server.New(srv)
}

// tlsServer serves an http.Server over TLS.
type tlsServer struct{ *http.Server }

func (s tlsServer) Serve(ln net.Listener) error { return s.ServeTLS(ln, "", "") }

// redisCAPool reads redis.tls_ca_file (with readCABundle): the CA certificates a rediss://
// server's certificate must chain to, instead of the system's roots.
func redisCAPool(file string) (*x509.CertPool, error) {
	pool, _, err := readCABundle(file)
	if err != nil {
		return nil, &config.Error{Key: "redis.tls_ca_file", Msg: err.Error()}
	}
	return pool, nil
}

// readCABundle reads a PEM CA bundle: every CERTIFICATE block must parse (a broken one is an
// error, where x509.CertPool.AppendCertsFromPEM would skip it), and there must be at least one.
// serve and check-config --connect read it the same way, so the check says what serve does.
func readCABundle(path string) (*x509.CertPool, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, n, nil
}
