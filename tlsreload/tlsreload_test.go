package tlsreload_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/academy-gateway/academy-gateway/internal/tlstest"
	"github.com/academy-gateway/academy-gateway/tlsreload"
)

// clock is a time source the test moves by hand.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) opts(log *zap.Logger) tlsreload.Options {
	return tlsreload.Options{Interval: time.Second, Now: c.Now, Logger: log}
}

// serveHTTPS serves a handler that says "ok" over TLS with cfg on a loopback port.
func serveHTTPS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String() + "/"
}

// client is one HTTP client with its own connection pool.
type client struct{ c *http.Client }

func newClient(ca *tlstest.CA) client {
	return client{&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.ClientConfig()}}}
}

// get fetches u and returns the serial of the certificate the server presented and whether the
// request went over a connection opened earlier.
func (c client) get(t *testing.T, u string) (serial *big.Int, reused bool) {
	t.Helper()
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	}), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("GET %s = %s %q", u, resp.Status, body)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber, reused
}

// TestRotation: HTTPS is served from the files; after the files are swapped (the way a
// Kubernetes Secret volume is updated) an open keep-alive connection keeps working with the
// certificate it began with, and a new handshake, once the interval has passed, gets the new one.
func TestRotation(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "test CA")
	first, second := ca.Issue(t), ca.Issue(t)
	dir := tlstest.NewSecretDir(t, first)
	clk := newClock()
	cert, err := tlsreload.New(dir.CertFile(), dir.KeyFile(), clk.opts(zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	u := serveHTTPS(t, cert.TLSConfig())

	kept := newClient(ca)
	if serial, _ := kept.get(t, u); serial.Cmp(first.Serial) != 0 {
		t.Fatalf("served serial %v, want the first certificate's %v", serial, first.Serial)
	}

	dir.Swap(t, second)
	if serial, _ := newClient(ca).get(t, u); serial.Cmp(first.Serial) != 0 {
		t.Errorf("a handshake within the interval got %v, want the cached first certificate", serial)
	}
	clk.Add(time.Second)

	serial, reused := kept.get(t, u)
	if !reused {
		t.Error("the keep-alive connection was not reused: the rotation closed it")
	}
	if serial.Cmp(first.Serial) != 0 {
		t.Errorf("the open connection reports serial %v, want the first certificate it began with", serial)
	}
	if serial, reused := newClient(ca).get(t, u); reused || serial.Cmp(second.Serial) != 0 {
		t.Errorf("a new connection got serial %v (reused %v), want the rotated certificate %v", serial, reused, second.Serial)
	}
	if serial, reused := kept.get(t, u); !reused || serial.Cmp(first.Serial) != 0 {
		t.Errorf("the old connection after the rotation: serial %v reused %v", serial, reused)
	}
}

// TestHalfWrittenRotation: a certificate that does not match its key (a rotation caught
// between the two writes) is skipped with a warning and the previous pair keeps serving; once
// the pair is complete the next check after the interval serves it.
func TestHalfWrittenRotation(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "test CA")
	first, second := ca.Issue(t), ca.Issue(t)
	certFile, keyFile := first.Write(t, t.TempDir())
	clk := newClock()
	core, logs := observer.New(zap.InfoLevel)
	cert, err := tlsreload.New(certFile, keyFile, clk.opts(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	u := serveHTTPS(t, cert.TLSConfig())

	tlstest.WriteFile(t, certFile, second.CertPEM) // the key is still the first one's
	clk.Add(time.Second)
	if serial, _ := newClient(ca).get(t, u); serial.Cmp(first.Serial) != 0 {
		t.Errorf("with a mismatched pair on disk the server presented %v, want the first certificate", serial)
	}
	if n := logs.FilterMessageSnippet("do not load").Len(); n != 1 {
		t.Errorf("%d warnings about the half-written pair, want 1: %v", n, logs.All())
	}

	tlstest.WriteFile(t, keyFile, second.KeyPEM)
	clk.Add(time.Second)
	if serial, _ := newClient(ca).get(t, u); serial.Cmp(second.Serial) != 0 {
		t.Errorf("with the complete new pair the server presented %v, want %v", serial, second.Serial)
	}
	if n := logs.FilterMessage("TLS certificate reloaded").Len(); n != 1 {
		t.Errorf("%d reload lines, want 1", n)
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, "PRIVATE KEY") || bytes.Contains([]byte(f.String), second.KeyPEM) {
				t.Errorf("a log line carries the private key: %v", e)
			}
		}
	}
}

// TestUnchangedFiles: checks that find the same content reload nothing.
func TestUnchangedFiles(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "test CA")
	certFile, keyFile := ca.Issue(t).Write(t, t.TempDir())
	clk := newClock()
	core, logs := observer.New(zap.InfoLevel)
	cert, err := tlsreload.New(certFile, keyFile, clk.opts(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := cert.GetCertificate(nil)
	for range 3 {
		clk.Add(time.Second)
		b, err := cert.GetCertificate(nil)
		if err != nil || b != a {
			t.Fatalf("GetCertificate = %p, %v; want the same certificate %p", b, err, a)
		}
	}
	if logs.Len() != 0 {
		t.Errorf("logged %v for unchanged files", logs.All())
	}
}

// TestNewErrors: a missing file or a pair that does not load fails at start, naming the file.
func TestNewErrors(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "test CA")
	a, b := ca.Issue(t), ca.Issue(t)
	dir := t.TempDir()
	certFile, keyFile := a.Write(t, dir)
	mismatched := dir + "/other.key"
	tlstest.WriteFile(t, mismatched, b.KeyPEM)
	tests := []struct {
		name, cert, key, want string
	}{
		{"missing certificate", dir + "/absent.crt", keyFile, "absent.crt"},
		{"missing key", certFile, dir + "/absent.key", "absent.key"},
		{"key of another certificate", certFile, mismatched, "other.key"},
		{"key file as certificate", keyFile, keyFile, "tls.key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tlsreload.New(tt.cert, tt.key, tlsreload.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
