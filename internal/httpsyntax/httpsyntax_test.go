package httpsyntax

import (
	"strings"
	"testing"
)

// rfcTchar is RFC 9110's tchar, written out independently of TokenByte.
const rfcTchar = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// TestTokenByte: TokenByte is RFC 9110's tchar for every byte value.
func TestTokenByte(t *testing.T) {
	for c := range 256 {
		want := strings.IndexByte(rfcTchar, byte(c)) >= 0
		if got := TokenByte(byte(c)); got != want {
			t.Errorf("TokenByte(%q) = %v, want %v", byte(c), got, want)
		}
	}
	if IsToken("") || IsToken([]byte{}) {
		t.Error("the empty string is a token")
	}
}

// TestValidFieldValue: every control byte but tab is refused, everything else (obs-text
// included) is accepted.
func TestValidFieldValue(t *testing.T) {
	for c := range 256 {
		want := c == '\t' || (c >= ' ' && c != 0x7f)
		if got := ValidFieldValue([]byte{'a', byte(c), 'b'}); got != want {
			t.Errorf("ValidFieldValue(%q) = %v, want %v", []byte{'a', byte(c), 'b'}, got, want)
		}
	}
}
