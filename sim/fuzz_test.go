package sim

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/academy-gateway/academy-gateway/scope"
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
			if scopes != nil || slices.Contains(scope.All, scope.Scope(unknown)) {
				t.Fatalf("parseScopes(%q) = %v, unknown %q", raw, scopes, unknown)
			}
			return
		}
		if missing == slices.Contains(scopes, string(scope.Connect)) {
			t.Fatalf("parseScopes(%q): missingConnect = %v with scopes %v", raw, missing, scopes)
		}
		var canon []string
		for _, k := range scope.All {
			if slices.Contains(scopes, string(k)) {
				canon = append(canon, string(k))
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
