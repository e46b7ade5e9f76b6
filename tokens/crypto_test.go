package tokens_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/academy-gateway/academy-gateway/tokens"
)

// cryptoTestKey returns the base64 of 32 bytes all equal to b.
func cryptoTestKey(b byte) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32))
}

func cryptoMustKeyring(tb testing.TB, keys ...string) *tokens.Keyring {
	tb.Helper()
	kr, err := tokens.NewKeyring(keys)
	if err != nil {
		tb.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

func TestKeyringRoundTrip(t *testing.T) {
	kr := cryptoMustKeyring(t, cryptoTestKey(1))
	tests := []struct {
		name      string
		plaintext []byte
		aad       []byte
	}{
		{name: "token record", plaintext: []byte(`{"access_token":"at","refresh_token":"rt"}`), aad: []byte("alice")},
		{name: "empty plaintext", plaintext: []byte{}, aad: []byte("alice")},
		{name: "empty aad", plaintext: []byte("x"), aad: nil},
		{name: "binary", plaintext: []byte{0, 1, 2, 0xff}, aad: []byte{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed := kr.Seal(tt.plaintext, tt.aad)
			if bytes.Contains(sealed, tt.plaintext) && len(tt.plaintext) > 1 {
				t.Errorf("Seal output %x contains the plaintext", sealed)
			}
			got, stale, err := kr.Open(sealed, tt.aad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if stale {
				t.Errorf("Open: stale = true for a record sealed with the current key")
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("Open = %q, want %q", got, tt.plaintext)
			}
		})
	}
}

func TestKeyringTamperingFails(t *testing.T) {
	kr := cryptoMustKeyring(t, cryptoTestKey(1))
	aad := []byte("alice")
	sealed := kr.Seal([]byte("access-token-and-refresh-token"), aad)
	for i := range sealed {
		for _, mask := range []byte{0x01, 0x80} {
			tampered := bytes.Clone(sealed)
			tampered[i] ^= mask
			got, _, err := kr.Open(tampered, aad)
			if !errors.Is(err, tokens.ErrDecrypt) {
				t.Errorf("byte %d ^ %#x: Open = %q, %v; want ErrDecrypt", i, mask, got, err)
			}
			if got != nil {
				t.Errorf("byte %d ^ %#x: Open returned plaintext %q with its error", i, mask, got)
			}
		}
	}
}

func TestKeyringOpenMalformed(t *testing.T) {
	kr := cryptoMustKeyring(t, cryptoTestKey(1))
	aad := []byte("alice")
	sealed := kr.Seal([]byte("secret"), aad)
	tests := []struct {
		name   string
		sealed []byte
	}{
		{name: "nil", sealed: nil},
		{name: "shorter than the key id", sealed: sealed[:3]},
		{name: "key id only", sealed: sealed[:4]},
		{name: "key id and half a nonce", sealed: sealed[:10]},
		{name: "no tag", sealed: sealed[:4+12]},
		{name: "last byte missing", sealed: sealed[:len(sealed)-1]},
		{name: "extra byte", sealed: append(bytes.Clone(sealed), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := kr.Open(tt.sealed, aad); !errors.Is(err, tokens.ErrDecrypt) {
				t.Errorf("Open error = %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestKeyringWrongAAD(t *testing.T) {
	kr := cryptoMustKeyring(t, cryptoTestKey(1))
	sealed := kr.Seal([]byte("alice's tokens"), []byte("alice"))
	for _, aad := range [][]byte{[]byte("bob"), []byte("alicE"), []byte("alice "), nil} {
		t.Run(string(aad), func(t *testing.T) {
			if _, _, err := kr.Open(sealed, aad); !errors.Is(err, tokens.ErrDecrypt) {
				t.Errorf("Open with aad %q error = %v, want ErrDecrypt", aad, err)
			}
		})
	}
}

func TestKeyringRotation(t *testing.T) {
	oldKey, newKey, otherKey := cryptoTestKey(1), cryptoTestKey(2), cryptoTestKey(3)
	plaintext, aad := []byte("tokens"), []byte("alice")
	tests := []struct {
		name      string
		sealWith  []string
		openWith  []string
		wantStale bool
		wantErr   bool
	}{
		{name: "old record after rotation", sealWith: []string{oldKey}, openWith: []string{newKey, oldKey}, wantStale: true},
		{name: "new record after rotation", sealWith: []string{newKey, oldKey}, openWith: []string{newKey, oldKey}, wantStale: false},
		{name: "record sealed after rotation, read by a replica not yet rotated", sealWith: []string{newKey, oldKey}, openWith: []string{oldKey}, wantErr: true},
		{name: "oldest of three keys", sealWith: []string{oldKey}, openWith: []string{otherKey, newKey, oldKey}, wantStale: true},
		{name: "old key removed", sealWith: []string{oldKey}, openWith: []string{newKey}, wantErr: true},
		{name: "unrelated keyring", sealWith: []string{oldKey}, openWith: []string{newKey, otherKey}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed := cryptoMustKeyring(t, tt.sealWith...).Seal(plaintext, aad)
			got, stale, err := cryptoMustKeyring(t, tt.openWith...).Open(sealed, aad)
			if tt.wantErr {
				if !errors.Is(err, tokens.ErrDecrypt) {
					t.Errorf("Open = %q, %v; want ErrDecrypt", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if diff := cmp.Diff(string(plaintext), string(got)); diff != "" {
				t.Errorf("Open plaintext mismatch (-want +got):\n%s", diff)
			}
			if stale != tt.wantStale {
				t.Errorf("Open stale = %v, want %v", stale, tt.wantStale)
			}
		})
	}
}

func TestNewKeyringRejectsBadKeys(t *testing.T) {
	tests := []struct {
		name string
		keys []string
	}{
		{name: "nil", keys: nil},
		{name: "empty list", keys: []string{}},
		{name: "empty key", keys: []string{""}},
		{name: "not base64", keys: []string{"not base64 at all!"}},
		{name: "URL-safe alphabet", keys: []string{base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))}},
		{name: "16 bytes", keys: []string{base64.StdEncoding.EncodeToString(make([]byte, 16))}},
		{name: "31 bytes", keys: []string{base64.StdEncoding.EncodeToString(make([]byte, 31))}},
		{name: "33 bytes", keys: []string{base64.StdEncoding.EncodeToString(make([]byte, 33))}},
		{name: "raw 32 characters", keys: []string{"0123456789abcdef0123456789abcdef"}},
		{name: "second key bad", keys: []string{cryptoTestKey(1), "short"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := tokens.NewKeyring(tt.keys)
			if err == nil {
				t.Errorf("NewKeyring(%q) = %v, nil; want an error", tt.keys, kr)
			}
		})
	}
}

func TestKeyringNoncesDiffer(t *testing.T) {
	kr := cryptoMustKeyring(t, cryptoTestKey(1))
	plaintext, aad := []byte("same plaintext"), []byte("alice")
	const keyIDLen, nonceLen = 4, 12
	seen := map[string]bool{}
	for range 100 {
		sealed := kr.Seal(plaintext, aad)
		if len(sealed) != keyIDLen+nonceLen+len(plaintext)+16 {
			t.Fatalf("len(Seal) = %d, want key id + nonce + plaintext + tag = %d", len(sealed), keyIDLen+nonceLen+len(plaintext)+16)
		}
		nonce := string(sealed[keyIDLen : keyIDLen+nonceLen])
		if seen[nonce] {
			t.Fatalf("nonce %x repeated", nonce)
		}
		seen[nonce] = true
	}
	a, b := kr.Seal(plaintext, aad), kr.Seal(plaintext, aad)
	if bytes.Equal(a, b) {
		t.Errorf("two seals of the same plaintext are equal: %x", a)
	}
	if !bytes.Equal(a[:keyIDLen], b[:keyIDLen]) {
		t.Errorf("key ids differ for the same key: %x vs %x", a[:keyIDLen], b[:keyIDLen])
	}
}
