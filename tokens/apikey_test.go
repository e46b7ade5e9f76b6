package tokens_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/academy-gateway/academy-gateway/tokens"
)

// apikeyIssuedRE is the shape of an issued key: the prefix, 32 base32 characters of 160 random bits
// and a 7-character base32 CRC-32.
var apikeyIssuedRE = regexp.MustCompile(`^agw_[a-z2-7]{39}$`)

func TestNewAPIKey(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		key := tokens.NewAPIKey()
		if !strings.HasPrefix(key, tokens.KeyPrefix) {
			t.Fatalf("NewAPIKey() = %q, want prefix %q", key, tokens.KeyPrefix)
		}
		if !apikeyIssuedRE.MatchString(key) {
			t.Fatalf("NewAPIKey() = %q, does not match %v", key, apikeyIssuedRE)
		}
		if !tokens.WellFormed(key) {
			t.Fatalf("WellFormed(NewAPIKey() = %q) = false", key)
		}
		if seen[key] {
			t.Fatalf("NewAPIKey() repeated %q", key)
		}
		seen[key] = true
	}
}

// TestWellFormedDetectsTypos checks that every single-character substitution in the body or the
// checksum of issued keys is refused: the CRC-32 catches every one-byte error.
func TestWellFormedDetectsTypos(t *testing.T) {
	// The base32 alphabet, the characters people confuse with it, and a few others.
	const substitutes = "abcdefghijklmnopqrstuvwxyz234567" + "01890OIL" + "ABZ_-. "
	for range 20 {
		key := tokens.NewAPIKey()
		for i := len(tokens.KeyPrefix); i < len(key); i++ {
			for _, c := range []byte(substitutes) {
				if c == key[i] {
					continue
				}
				typo := key[:i] + string(c) + key[i+1:]
				if tokens.WellFormed(typo) {
					t.Errorf("WellFormed(%q) = true; it is %q with position %d changed to %q", typo, key, i, c)
				}
			}
		}
	}
}

func TestWellFormed(t *testing.T) {
	issued := tokens.NewAPIKey()
	tests := []struct {
		name string
		key  string
		want bool
	}{
		{name: "issued", key: issued, want: true},
		{name: "legacy key", key: "3f9c2a7d-legacy-v1-key", want: true},
		{name: "legacy hex key", key: "0123456789abcdef0123456789abcdef", want: true},
		{name: "legacy key of 512 characters", key: strings.Repeat("k", 512), want: true},
		{name: "legacy key of 513 characters", key: strings.Repeat("k", 513), want: false},
		{name: "empty", key: "", want: false},
		{name: "three characters", key: "abc", want: false},
		{name: "legacy key of 11 characters", key: strings.Repeat("k", tokens.MinKeyLen-1), want: false},
		{name: "legacy key of 12 characters", key: strings.Repeat("k", tokens.MinKeyLen), want: true},
		{name: "prefix only", key: tokens.KeyPrefix, want: false},
		{name: "prefix and checksum length", key: tokens.KeyPrefix + "abcdefg", want: false},
		{name: "issued key truncated", key: issued[:len(issued)-1], want: false},
		{name: "issued key with an extra character", key: issued + "a", want: false},
		{name: "issued key in upper case", key: strings.ToUpper(issued), want: true}, // no prefix: a legacy key
		{name: "issued key of 513 characters", key: tokens.KeyPrefix + strings.Repeat("a", 509), want: false},
		{
			name: "legacy key with a control character", key: "legacy\x00key-with-nul", want: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tokens.WellFormed(tt.key); got != tt.want {
				t.Errorf("WellFormed(%q) = %v, want %v", tt.key, got, tt.want)
			}
		})
	}
}

func TestHashKey(t *testing.T) {
	tests := []struct {
		key  string
		want string
	}{
		// FIPS 180-2 test vectors.
		{key: "", want: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{key: "abc", want: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{key: "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", want: "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got := tokens.HashKey(tt.key); got != tt.want {
				t.Errorf("HashKey(%q) = %s, want %s", tt.key, got, tt.want)
			}
		})
	}
}
