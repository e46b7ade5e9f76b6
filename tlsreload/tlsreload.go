// Package tlsreload serves a TLS certificate from a pair of PEM files and picks up new files
// without a restart. cert-manager and Kubernetes rotate a mounted Secret by swapping a symlink,
// so the paths stay the same while their content changes: a handshake that finds the last check
// older than the interval re-reads both files, and when they hold a new valid pair, that pair
// serves every handshake from then on. Connections already open keep the certificate they were
// established with; nothing is closed. A pair that does not load (a half-written rotation) is
// logged and skipped, and the previous certificate keeps serving until the files are valid.
package tlsreload

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// DefaultInterval is how often, at most, the files are re-read when Options.Interval is zero.
// Reading two small files every few seconds costs nothing next to the handshakes that trigger it.
const DefaultInterval = 5 * time.Second

// Options are the optional knobs of a Certificate.
type Options struct {
	// Interval is the least time between two reads of the files (zero: DefaultInterval). The
	// files are only read during a handshake, so an idle listener reads nothing.
	Interval time.Duration
	// Now returns the current time (nil: time.Now); tests pass a clock they move.
	Now func() time.Time
	// Logger receives a line per reload and per failed reload (nil: none).
	Logger *zap.Logger
}

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// loaded is one certificate with the file contents it came from.
type loaded struct {
	cert          *tls.Certificate
	certPEM, key  []byte
	checkedAtUnix int64 // UnixNano of the last read of the files
}

// Certificate is a key pair read from certFile and keyFile, re-read when they change. Its
// GetCertificate method goes into a tls.Config; it is safe for concurrent use.
type Certificate struct {
	certFile, keyFile string
	opts              Options
	cur               atomic.Pointer[loaded]
	reloading         sync.Mutex // one handshake re-reads the files; the others use cur
}

// New loads the pair now, so a missing or invalid file is an error at start rather than at the
// first handshake.
func New(certFile, keyFile string, opts Options) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile, opts: opts.withDefaults()}
	certPEM, keyPEM, err := c.read()
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair %s, %s: %w", certFile, keyFile, err)
	}
	c.cur.Store(&loaded{cert: &cert, certPEM: certPEM, key: keyPEM, checkedAtUnix: c.opts.Now().UnixNano()})
	return c, nil
}

// GetCertificate returns the current certificate, first re-reading the files when the last read
// is older than the interval. It never fails once New succeeded: a pair that does not load
// leaves the previous one in place.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cur := c.cur.Load()
	now := c.opts.Now()
	if now.UnixNano()-cur.checkedAtUnix < int64(c.opts.Interval) || !c.reloading.TryLock() {
		return cur.cert, nil // fresh enough, or another handshake is reading the files right now
	}
	defer c.reloading.Unlock()
	cur = c.cur.Load() // another handshake may have reloaded since the first look
	if now.UnixNano()-cur.checkedAtUnix < int64(c.opts.Interval) {
		return cur.cert, nil
	}
	next := *cur
	next.checkedAtUnix = now.UnixNano()
	if certPEM, keyPEM, err := c.read(); err != nil {
		c.opts.Logger.Warn("TLS certificate files unreadable; keeping the current certificate", zap.Error(err))
	} else if !bytes.Equal(certPEM, cur.certPEM) || !bytes.Equal(keyPEM, cur.key) {
		if cert, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			// Probably a rotation caught half-way (certificate written, key not yet): the next
			// check after the interval sees the complete pair.
			c.opts.Logger.Warn("new TLS certificate files do not load; keeping the current certificate",
				zap.String("cert_file", c.certFile), zap.Error(err))
		} else {
			next = loaded{cert: &cert, certPEM: certPEM, key: keyPEM, checkedAtUnix: now.UnixNano()}
			c.opts.Logger.Info("TLS certificate reloaded", zap.String("cert_file", c.certFile), zap.Time("not_after", notAfter(&cert)))
		}
	}
	c.cur.Store(&next)
	return next.cert, nil
}

// TLSConfig returns a server configuration that serves this certificate (TLS 1.2 or newer).
func (c *Certificate) TLSConfig() *tls.Config {
	return &tls.Config{GetCertificate: c.GetCertificate, MinVersion: tls.VersionTLS12}
}

func (c *Certificate) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(c.certFile); err != nil {
		return nil, nil, fmt.Errorf("read TLS certificate: %w", err)
	}
	if keyPEM, err = os.ReadFile(c.keyFile); err != nil {
		return nil, nil, fmt.Errorf("read TLS key: %w", err)
	}
	return certPEM, keyPEM, nil
}

func notAfter(c *tls.Certificate) time.Time {
	if c.Leaf == nil {
		return time.Time{}
	}
	return c.Leaf.NotAfter
}
