package sim

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// FuzzParseScopes checks the scope parser never panics, only grants known
// scopes in canonical order, and is stable: re-parsing its output gives the same.
func FuzzParseScopes(f *testing.F) {
	for _, seed := range []string{
		"connect",                   // minimum
		"connect read write delete", // everything, space-separated
		"connect,read",              // comma-separated
		"connect+read",              // '+' left literal by a client
		"  read   connect  read ",   // duplicates and padding
		"connect admin",             // unknown scope
		"read",                      // missing connect
		"",                          // nothing
		"connect\tread,,+write",     // mixed separators
		"CONNECT",                   // case matters
		"connect read\u00a0write",   // non-ASCII space is not a separator
		"connect%20read",            // left encoded
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		scopes, unknown, missing := parseScopes(raw)
		if unknown != "" {
			if scopes != nil || slices.Contains(knownScopes[:], unknown) {
				t.Fatalf("parseScopes(%q) = %v, unknown %q", raw, scopes, unknown)
			}
			return
		}
		if missing == slices.Contains(scopes, scopeConnect) {
			t.Fatalf("parseScopes(%q): missingConnect = %v with scopes %v", raw, missing, scopes)
		}
		var canon []string
		for _, k := range knownScopes {
			if slices.Contains(scopes, k) {
				canon = append(canon, k)
			}
		}
		if !slices.Equal(canon, scopes) {
			t.Fatalf("parseScopes(%q) = %v, not canonical", raw, scopes)
		}
		again, unknown2, missing2 := parseScopes(strings.Join(scopes, " "))
		if !slices.Equal(again, scopes) || unknown2 != "" || missing2 != missing {
			t.Fatalf("round trip of %q: %v -> %v", raw, scopes, again)
		}
	})
}

// FuzzBearerToken checks the Authorization parser never panics and that a
// token it accepts is one non-empty word that round-trips.
func FuzzBearerToken(f *testing.F) {
	for _, seed := range []string{
		"Bearer at_abc",    // normal
		"bearer at_abc",    // lower-case scheme
		"Bearer  at_abc ",  // extra spaces
		"Bearer",           // no token
		"Basic dXNlcjpwdw", // other scheme
		"Bearer a b",       // two words
		"Bearer\tat_abc",   // tab separator
		"",                 // empty
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, ok := bearerToken(header)
		if !ok {
			if tok != "" {
				t.Fatalf("bearerToken(%q) rejected but returned %q", header, tok)
			}
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t") {
			t.Fatalf("bearerToken(%q) = %q", header, tok)
		}
		if again, ok := bearerToken("Bearer " + tok); !ok || again != tok {
			t.Fatalf("round trip of %q: %q, %v", tok, again, ok)
		}
	})
}

// FuzzPeopleFilter checks the /people filter never panics and that every
// parsed condition has a known operator.
func FuzzPeopleFilter(f *testing.F) {
	for _, seed := range []string{
		`contains= "Rob" AND startsWith = "Rob" AND endsWith = "Jr."`, // the docs' example
		`equals = "Robert Downey Jr."`,                                // older docs' operator
		`contains = "x" OR equal = "y"`,                               // unsupported OR
		`contains = "unterminated`,                                    // bad quoting
		`rob`,                                                         // plain substring
		`"`,                                                           // lone quote
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, q string) {
		match, err := peopleFilter(q)
		if err != nil {
			return
		}
		_ = match("Robert Downey Jr.")
		if conds, ok := parsePeopleQuery(q); ok {
			for _, c := range conds {
				switch c.op {
				case "contains", "startswith", "endswith", "equal", "equals":
				default:
					t.Fatalf("parsePeopleQuery(%q) gave operator %q", q, c.op)
				}
			}
		}
	})
}
