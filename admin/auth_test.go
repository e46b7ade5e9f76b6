package admin

import (
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
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
		{"Bearer tok\tmore", "", false},
		{"Bearertok", "", false},
		{"Basic dG9rOg==", "", false},
		{"tok", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := bearerToken(tt.header)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tt.header, got, ok, tt.want, tt.wantOK)
		}
	}
}

// FuzzBearerToken checks the Authorization parser at the trust boundary: whatever it accepts
// is a non-empty credential without spaces that round-trips through a canonical header.
func FuzzBearerToken(f *testing.F) {
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
		tok, ok := bearerToken(header)
		if !ok {
			if tok != "" {
				t.Fatalf("bearerToken(%q) refused but returned %q", header, tok)
			}
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t") {
			t.Fatalf("bearerToken(%q) = %q: empty or spaced", header, tok)
		}
		if !strings.EqualFold(header[:len("Bearer ")], "Bearer ") || !strings.HasSuffix(header, tok) {
			t.Fatalf("bearerToken(%q) = %q: not the credential of a Bearer header", header, tok)
		}
		if again, ok := bearerToken("Bearer " + tok); !ok || again != tok {
			t.Fatalf("round trip of %q gave %q, %v", tok, again, ok)
		}
	})
}

func TestCheckToken(t *testing.T) {
	h := New(nil, nil, nil, Options{Token: "s3cret"})
	tests := []struct {
		values []string
		want   error
	}{
		{nil, errNoCredentials},
		{[]string{"Bearer s3cret", "Bearer s3cret"}, errManyHeaders},
		{[]string{"Basic s3cret"}, errNotBearer},
		{[]string{"Bearer s3cre"}, errWrongToken},
		{[]string{"Bearer s3crets"}, errWrongToken},
		{[]string{"Bearer S3CRET"}, errWrongToken},
		{[]string{"Bearer s3cret"}, nil},
	}
	for _, tt := range tests {
		if got := h.checkToken(tt.values); got != tt.want {
			t.Errorf("checkToken(%q) = %v, want %v", tt.values, got, tt.want)
		}
	}
}

func TestPlainTemplate(t *testing.T) {
	tests := map[string]string{
		"/admin/keys":                         "/admin/keys",
		"/admin/keys/{id}":                    "/admin/keys/{id}",
		"/admin/keys/{id:[0-9a-f]{16}}":       "/admin/keys/{id}",
		"/admin/connections/{user:[^/]+}/x":   "/admin/connections/{user}/x",
		"/admin/{a:[a-z]+}/{b:(?:x|y){1,2}}/": "/admin/{a}/{b}/",
	}
	for in, want := range tests {
		if got := plainTemplate(in); got != want {
			t.Errorf("plainTemplate(%q) = %q, want %q", in, got, want)
		}
	}
}
