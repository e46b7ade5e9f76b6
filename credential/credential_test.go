package credential

import (
	"strings"
	"testing"
)

func TestBearer(t *testing.T) {
	tests := []struct {
		header string
		want   string
		wantOK bool
	}{
		{"Bearer tok", "tok", true},
		{"bearer tok", "tok", true},
		{"BEARER tok", "tok", true},
		{"Bearer   tok", "tok", true}, // RFC 7235 allows 1*SP
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer tok more", "", false},
		{"Bearer tok  ", "tok", true}, // trailing white space is not part of the value
		{"Bearer tok\tmore", "", false},
		{"Bearertok", "", false},
		{"Basic dG9rOg==", "", false},
		{"tok", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := Bearer(tt.header)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Bearer(%q) = %q, %v; want %q, %v", tt.header, got, ok, tt.want, tt.wantOK)
		}
	}
}

// FuzzBearer checks the Authorization parser at the trust boundary: whatever it accepts
// is a non-empty credential without spaces that round-trips through a canonical header.
func FuzzBearer(f *testing.F) {
	for _, seed := range []string{
		"Bearer tok",            // the ordinary form
		"bearer tok",            // scheme in another case
		"Bearer  tok",           // several spaces
		"Bearer ",               // no credential
		"Bearer tok extra",      // two words
		"Basic dXNlcjpwYXNz",    // another scheme
		"Bearer\ttok",           // a tab is not the separator
		"Bearer t\x00k",         // control bytes pass through; the digest compare decides
		"BEARER " + "é" + "tok", // non-ASCII credential
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, ok := Bearer(header)
		if !ok {
			if tok != "" {
				t.Fatalf("Bearer(%q) refused but returned %q", header, tok)
			}
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t") {
			t.Fatalf("Bearer(%q) = %q: empty or spaced", header, tok)
		}
		if !strings.EqualFold(header[:len("Bearer ")], "Bearer ") || !strings.HasSuffix(strings.TrimRight(header, " \t"), tok) {
			t.Fatalf("Bearer(%q) = %q: not the credential of a Bearer header", header, tok)
		}
		if again, ok := Bearer("Bearer " + tok); !ok || again != tok {
			t.Fatalf("round trip of %q gave %q, %v", tok, again, ok)
		}
	})
}

func TestSecretMatches(t *testing.T) {
	s := NewSecret("s3cret")
	for in, want := range map[string]bool{"s3cret": true, "s3cre": false, "s3crets": false, "S3CRET": false, "": false} {
		if got := s.Matches(in); got != want {
			t.Errorf("Matches(%q) = %v, want %v", in, got, want)
		}
	}
	if NewSecret("").Matches("") {
		t.Error("an empty secret matched the empty string")
	}
}
