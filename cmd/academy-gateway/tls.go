package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/academy-gateway/academy-gateway/config"
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

// serveOn serves srv on ln, over TLS when srv has a TLS configuration.
func serveOn(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "") // the certificate comes from TLSConfig.GetCertificate
	}
	return srv.Serve(ln)
}

// redisCAPool reads redis.tls_ca_file: the CA certificates (PEM) a rediss:// server's
// certificate must chain to, instead of the system's roots.
func redisCAPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &config.Error{Key: "redis.tls_ca_file", Msg: err.Error()}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, &config.Error{Key: "redis.tls_ca_file", Msg: fmt.Sprintf("%s holds no PEM certificate", file)}
	}
	return pool, nil
}
