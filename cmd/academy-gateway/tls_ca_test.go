package main

import (
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/internal/tlstest"
)

// TestRedisCAPool: serve reads redis.tls_ca_file as check-config --connect does: a bundle with a
// certificate that does not parse is refused, not used without it.
func TestRedisCAPool(t *testing.T) {
	good := tlstest.NewCA(t, "one").PEM
	broken := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")})
	for _, tc := range []struct {
		name    string
		bundle  []byte
		wantErr string // "" : accepted
	}{
		{"one CA", good, ""},
		{"two CAs and a key block", append(append(append([]byte{}, good...), key...), tlstest.NewCA(t, "two").PEM...), ""},
		{"a broken certificate beside a good one", append(append([]byte{}, good...), broken...), "certificate 2"},
		{"no certificate", key, "holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "ca.pem")
			if err := os.WriteFile(file, tc.bundle, 0o600); err != nil {
				t.Fatal(err)
			}
			pool, err := redisCAPool(file)
			if tc.wantErr == "" {
				if err != nil || pool == nil {
					t.Fatalf("redisCAPool = %v, %v; want a pool", pool, err)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != "redis.tls_ca_file" || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("redisCAPool error %v, want a redis.tls_ca_file error with %q", err, tc.wantErr)
			}
		})
	}
}
