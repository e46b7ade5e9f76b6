package tokens_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/tokens"
)

// FuzzWellFormed fuzzes the x-api-key format check, the first thing every caller-supplied key
// meets (docs/reference.md §2.1: a malformed key is one that keys create --key refuses). Properties: it never
// panics; a well-formed key is 1–512 printable ASCII characters; an issued key (agw_ prefix)
// survives only with its own checksum, so changing any one character of it is caught.
func FuzzWellFormed(f *testing.F) {
	for _, seed := range []string{
		tokens.NewAPIKey(),               // an issued key
		"3a9f1c0e-legacy-v1-key",         // a legacy v1 key
		"agw_",                           // prefix only
		"agw_aaaaaaa",                    // prefix and a checksum's length
		"agw_" + strings.Repeat("a", 39), // the issued length, wrong checksum
		"",                               // missing
		"key with spaces",                // not a header token
		strings.Repeat("k", 513),         // too long
		"caf\u00e9",                      // non-ASCII
		"k\x00ey",                        // NUL
		"AGW_" + tokens.NewAPIKey()[4:],  // the prefix in upper case is a legacy key
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		ok := tokens.WellFormed(key)
		if !ok {
			return
		}
		if key == "" || len(key) > 512 {
			t.Fatalf("WellFormed(%q) with length %d", key, len(key))
		}
		for i := 0; i < len(key); i++ {
			if key[i] <= ' ' || key[i] > '~' {
				t.Fatalf("WellFormed(%q) with byte %#x", key, key[i])
			}
		}
		if !strings.HasPrefix(key, tokens.KeyPrefix) {
			return
		}
		for i := len(tokens.KeyPrefix); i < len(key); i++ { // one changed character: refused
			b := []byte(key)
			if b[i] == 'a' {
				b[i] = 'b'
			} else {
				b[i] = 'a'
			}
			if tokens.WellFormed(string(b)) {
				t.Fatalf("WellFormed accepts %q and its one-character change %q", key, b)
			}
		}
	})
}

// fuzzRoundTripper answers every request with a fuzzed status and body.
type fuzzRoundTripper struct {
	status int
	body   string
}

func (rt fuzzRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: rt.status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(rt.body)), Request: r}, nil
}

// FuzzAcademyTokenResponse fuzzes the decoding of the Academy's token and refresh answers (JSON,
// lifetimes in minutes) and of its error bodies. Properties: never a panic; a Grant is returned
// only with both tokens and an access expiry after the issue time; an error never carries the
// refresh token or the client secret that were sent.
func FuzzAcademyTokenResponse(f *testing.F) {
	for _, seed := range []struct {
		status int
		body   string
	}{
		{200, `{"access_token":"a","expires_in":5,"refresh_token":"r","refresh_expires_in":60}`},
		{200, `{"access_token":"a","expires_in":5,"refresh_token":"r"}`},                   // refresh lifetime unknown
		{200, `{"access_token":"a","expires_in":0,"refresh_token":"r"}`},                   // no lifetime
		{200, `{"access_token":"a","expires_in":-5,"refresh_token":"r"}`},                  // negative
		{200, `{"access_token":"a","expires_in":9223372036854775807,"refresh_token":"r"}`}, // overflow
		{200, `{"access_token":"a","expires_in":"5","refresh_token":"r"}`},                 // a string
		{200, `{"access_token":"","expires_in":5,"refresh_token":"r"}`},                    // empty token
		{200, `not json`},
		{200, ``},
		{400, `{"error":{"message":"Refresh token expired"}}`},
		{400, `{"error":"invalid_grant","error_description":"spent"}`},
		{401, `{"error":{"message":"Invalid client credentials."}}`},
		{429, `<html>slow down</html>`},
		{503, `{"error":{"message":"` + strings.Repeat("x", 4096) + `"}}`},
	} {
		f.Add(seed.status, seed.body)
	}
	const refreshToken, secret = "rt-secret-value-1234", "client-secret-5678"
	f.Fuzz(func(t *testing.T, status int, body string) {
		if status < 100 || status > 999 {
			return
		}
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		a := tokens.NewAcademy(&http.Client{Transport: fuzzRoundTripper{status, body}}, tokens.AcademyConfig{
			ClientID: "cid", ClientSecret: secret, TokenURL: "http://academy.test/token",
			RefreshURL: "http://academy.test/refresh", Unit: time.Minute, Retries: -1,
			Now: func() time.Time { return now },
		})
		g, err := a.Refresh(context.Background(), refreshToken)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, refreshToken) || strings.Contains(msg, secret) {
				t.Fatalf("error carries a secret: %s", msg)
			}
			var apiErr *tokens.APIError
			if status < 300 && errors.As(err, &apiErr) {
				t.Fatalf("status %d is not an Academy error: %v", status, err)
			}
			return
		}
		if status >= 300 {
			t.Fatalf("status %d gave a grant", status)
		}
		if g.AccessToken == "" || g.RefreshToken == "" || !g.AccessExpiresAt.After(g.IssuedAt) {
			t.Fatalf("accepted an incomplete grant %+v from %q", g, body)
		}
	})
}
