package proxy

import (
	"net/url"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	tests := []struct {
		name string
		path string
		want bool
	}{
		// Accepted: what the upstream receives is exactly what was checked.
		{name: "root", path: "/", want: true},
		{name: "collection", path: "/movies", want: true},
		{name: "trailing slash", path: "/movies/", want: true},
		{name: "legacy v1 resource", path: "/api/v1/movies/0c841ade9610", want: true},
		{name: "escaped space in a segment", path: "/people/John%20Doe", want: true},
		{name: "escaped percent", path: "/search/100%25", want: true},
		{name: "dots inside a segment", path: "/files/a.b..c/...", want: true},
		{name: "dot-prefixed segment", path: "/.well-known/x", want: true},
		{name: "escaped non-ASCII", path: "/people/Jos%C3%A9", want: true},
		{name: "query characters already split off", path: "/movies;v=1", want: true},

		// Refused.
		{name: "empty", path: "", want: false},
		{name: "relative", path: "movies", want: false},
		{name: "asterisk form", path: "*", want: false},
		{name: "empty segment", path: "/a//b", want: false},
		{name: "leading double slash", path: "//a", want: false},
		{name: "only slashes", path: "//", want: false},
		{name: "dot segment", path: "/./a", want: false},
		{name: "trailing dot segment", path: "/a/.", want: false},
		{name: "trailing dot-dot", path: "/a/..", want: false},
		{name: "dot-dot segment", path: "/a/../b", want: false},
		{name: "dot-dot then trailing slash", path: "/a/../", want: false},
		{name: "escaped dot-dot", path: "/a/%2e%2e/b", want: false},
		{name: "escaped dot upper case", path: "/a/%2E/b", want: false},
		{name: "half-escaped dot-dot", path: "/a/.%2e/b", want: false},
		{name: "escaped slash", path: "/a%2fb", want: false},
		{name: "escaped slash upper case", path: "/a%2Fb", want: false},
		{name: "escaped backslash", path: "/a%5cb", want: false},
		{name: "escaped backslash upper case", path: "/a%5Cb", want: false},
		{name: "backslash", path: `/a\b`, want: false},
		{name: "backslash dot-dot", path: `/a\..\b`, want: false},
		{name: "escaped NUL", path: "/a%00", want: false},
		{name: "raw NUL", path: "/a\x00b", want: false},
		{name: "tab", path: "/a\tb", want: false},
		{name: "newline", path: "/a\nb", want: false},
		{name: "DEL", path: "/a\x7fb", want: false},
		{name: "truncated escape", path: "/a%2", want: false},
		{name: "lone percent at the end", path: "/a%", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cleanPath(tt.path); got != tt.want {
				t.Errorf("cleanPath(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

// TestCleanPathInvalidEscape documents that cleanPath accepts percent signs not followed by two
// hex digits. net/http never hands such a path over (EscapedPath re-escapes it), but the
// forwarding code relies on cleanPath for url.PathUnescape to succeed.
func TestCleanPathInvalidEscape(t *testing.T) {
	for _, p := range []string{"/a%zz", "/a%g0", "/%%41"} {
		if cleanPath(p) {
			t.Errorf("cleanPath(%q) = true, want false (not a valid escape)", p)
		}
	}
}

func TestStripPrefix(t *testing.T) {
	prefixes := []string{"/api/v1", "/api/v2"}
	tests := []struct {
		path string
		want string
	}{
		{path: "/api/v1/movies", want: "/movies"},
		{path: "/api/v1/movies/0c841ade9610", want: "/movies/0c841ade9610"},
		{path: "/api/v1", want: "/"},
		{path: "/api/v1/", want: "/"},
		{path: "/api/v2/info", want: "/info"},
		{path: "/api/v2", want: "/"},
		{path: "/api/v10/x", want: "/api/v10/x"},
		{path: "/api/v1x", want: "/api/v1x"},
		{path: "/api", want: "/api"},
		{path: "/movies", want: "/movies"},
		{path: "/", want: "/"},
		{path: "/api/v1/api/v2/x", want: "/api/v2/x"}, // only one prefix is removed
		{path: "/x/api/v1/movies", want: "/x/api/v1/movies"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := stripPrefix(tt.path, prefixes); got != tt.want {
				t.Errorf("stripPrefix(%q, %q) = %q, want %q", tt.path, prefixes, got, tt.want)
			}
		})
	}
	t.Run("no prefixes", func(t *testing.T) {
		if got := stripPrefix("/api/v1/movies", nil); got != "/api/v1/movies" {
			t.Errorf("stripPrefix(%q, nil) = %q, want it unchanged", "/api/v1/movies", got)
		}
	})
}

func FuzzCleanPath(f *testing.F) {
	for _, seed := range []string{
		"/",                            // root
		"/movies",                      // plain collection
		"/movies/",                     // trailing slash
		"/api/v1/movies/0c841ade9610",  // legacy v1 resource
		"/people/John%20Doe",           // escaped space
		"/search/100%25",               // escaped percent: unescapes to a lone "%"
		"/search/%252e%252e",           // double-escaped dots: one unescape leaves "%2e%2e"
		"/files/a.b..c/...",            // dots inside segments, not dot segments
		"/a/%2e%2e/b",                  // escaped dot-dot (refused)
		"/a/.%2e/b",                    // half-escaped dot-dot (refused)
		"/a%2fb",                       // escaped slash (refused)
		"/a%5Cb",                       // escaped backslash (refused)
		"/a//b",                        // empty segment (refused)
		"/a/../b",                      // dot-dot segment (refused)
		"/a%00",                        // escaped NUL (refused)
		"/a%2",                         // truncated escape (refused)
		"/people/Jos%C3%A9/%E2%82%AC",  // escaped UTF-8
		"/\xc3\xa9/\xff",               // raw non-ASCII and invalid UTF-8
		"/%7e/%41%42%43",               // escapes of unreserved characters
		"/a%25%32%65/b",                // "%2e" spelled with escapes: unescapes to a literal "%2e"
		"/%2F%2E%2E%2F",                // upper-case escaped "/../" (refused)
		"/a;b=c/d,e",                   // path parameters kept as data
		"/a/b/c/d/e/f/g/h/i/j/k/l/m/n", // many segments
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !cleanPath(p) {
			return
		}
		unescaped, err := url.PathUnescape(p)
		if err != nil {
			t.Fatalf("cleanPath(%q) = true but url.PathUnescape fails: %v", p, err)
		}
		if strings.Contains(unescaped, "//") {
			t.Errorf("cleanPath(%q) = true but it unescapes to %q, with an empty segment", p, unescaped)
		}
		if strings.ContainsAny(unescaped, "\\\x00") {
			t.Errorf("cleanPath(%q) = true but it unescapes to %q, with a backslash or NUL", p, unescaped)
		}
		segs := strings.Split(unescaped, "/")
		for _, s := range segs {
			if s == "." || s == ".." {
				t.Errorf("cleanPath(%q) = true but it unescapes to %q, with a dot segment", p, unescaped)
			}
		}
		if got, want := len(segs), len(strings.Split(p, "/")); got != want {
			t.Errorf("cleanPath(%q) = true but it unescapes to %q with %d segments, not %d", p, unescaped, got, want)
		}
	})
}
