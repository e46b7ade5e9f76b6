// Package tlstest makes certificates for tests: a throwaway CA and leaf certificates it signs
// (ECDSA P-256), written as PEM files the code under test loads like an operator's.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// CA is a certificate authority made for one test.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA certificate in PEM, what a client's CA bundle holds.
	PEM []byte
}

// NewCA makes a self-signed CA valid for a day.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parse CA certificate: %v", err)
	}
	return &CA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Pool returns a pool holding only this CA, for clients.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Leaf is a certificate the CA issued, with its key.
type Leaf struct {
	// CertPEM and KeyPEM are the certificate and its PKCS #8 private key in PEM.
	CertPEM, KeyPEM []byte
	// Serial is the certificate's serial number, to tell two leaves apart on the wire.
	Serial *big.Int
}

// Issue makes a server certificate for 127.0.0.1, ::1 and localhost, plus hosts (IP addresses
// or DNS names), valid for a day.
func (ca *CA) Issue(tb testing.TB, hosts ...string) Leaf {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatalf("create leaf certificate: %v", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("marshal key: %v", err)
	}
	return Leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		Serial:  tmpl.SerialNumber,
	}
}

// Write writes the leaf as dir/tls.crt and dir/tls.key and returns both paths.
func (l Leaf) Write(tb testing.TB, dir string) (certFile, keyFile string) {
	tb.Helper()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	WriteFile(tb, certFile, l.CertPEM)
	WriteFile(tb, keyFile, l.KeyPEM)
	return certFile, keyFile
}

// WriteFile writes data to path (mode 0600) or fails the test.
func WriteFile(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatalf("write %s: %v", path, err)
	}
}

// SecretDir is a directory laid out as Kubernetes mounts a Secret: tls.crt and tls.key are
// symlinks through "..data", itself a symlink to a timestamped directory. Swap replaces the
// "..data" link atomically, which is how cert-manager's rotations reach a pod.
type SecretDir struct {
	// Dir holds tls.crt and tls.key.
	Dir string
	n   int
}

// NewSecretDir lays out leaf in a fresh directory the Kubernetes way.
func NewSecretDir(tb testing.TB, leaf Leaf) *SecretDir {
	tb.Helper()
	d := &SecretDir{Dir: tb.TempDir()}
	d.Swap(tb, leaf)
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(d.Dir, name)); err != nil {
			tb.Fatalf("symlink %s: %v", name, err)
		}
	}
	return d
}

// CertFile is the path of the certificate, as a configuration names it.
func (d *SecretDir) CertFile() string { return filepath.Join(d.Dir, "tls.crt") }

// KeyFile is the path of the private key.
func (d *SecretDir) KeyFile() string { return filepath.Join(d.Dir, "tls.key") }

// Swap writes leaf into a new timestamped directory and points "..data" at it with a rename,
// so a reader sees either the old pair or the new one, never a mix.
func (d *SecretDir) Swap(tb testing.TB, leaf Leaf) {
	tb.Helper()
	d.n++
	gen := "..gen" + strconv.Itoa(d.n)
	if err := os.Mkdir(filepath.Join(d.Dir, gen), 0o700); err != nil {
		tb.Fatalf("mkdir: %v", err)
	}
	leaf.Write(tb, filepath.Join(d.Dir, gen))
	tmp := filepath.Join(d.Dir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		tb.Fatalf("symlink: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(d.Dir, "..data")); err != nil {
		tb.Fatalf("swap ..data: %v", err)
	}
}

// ClientConfig returns a TLS client configuration that trusts only ca.
func (ca *CA) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	return key
}

func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatalf("serial: %v", err)
	}
	return n
}
