// Package scope is the gateway's one vocabulary of Academy API v2 scopes (docs/reference.md §1, §4 step 2):
// their names, how lists of them are parsed, and which scope a request needs from its method.
// Configuration, the proxy, forward-auth, the admin API, the CLI and the simulator all use it, so
// a scope is spelled and checked the same way everywhere.
package scope

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Scope is one Academy API v2 scope.
type Scope string

// The scopes the Academy knows. Connect is needed to authorize at all; the others are required by
// the method of a request.
const (
	Connect Scope = "connect"
	Read    Scope = "read"
	Write   Scope = "write"
	Delete  Scope = "delete"
)

// All lists every scope, in the order the Academy documents them.
var All = []Scope{Connect, Read, Write, Delete}

// KeyScopes lists the scopes an API key may be narrowed to.
var KeyScopes = []Scope{Read, Write, Delete}

// Parse returns the scope named s, or an error naming the known ones.
func Parse(s string) (Scope, error) {
	if sc := Scope(s); slices.Contains(All, sc) {
		return sc, nil
	}
	return "", fmt.Errorf("unknown scope %q (known: %s)", s, Join(All, ", "))
}

// ParseList checks that every item is one of allowed and returns them without repeats, in their
// first order. An empty list stays empty (nil).
func ParseList(items []string, allowed []Scope) ([]string, error) {
	var out []string
	for _, it := range items {
		if !slices.Contains(allowed, Scope(it)) {
			return nil, fmt.Errorf("%q is not one of %s", it, Join(allowed, ", "))
		}
		if !slices.Contains(out, it) {
			out = append(out, it)
		}
	}
	return out, nil
}

// Fields splits a written list of scopes ("read,write", "read write" or a mix) into its items.
func Fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// Strings returns scopes as the plain strings records and configuration hold.
func Strings(scopes []Scope) []string {
	out := make([]string, len(scopes))
	for i, s := range scopes {
		out[i] = string(s)
	}
	return out
}

// Join writes scopes separated by sep.
func Join(scopes []Scope, sep string) string { return strings.Join(Strings(scopes), sep) }

// InfoPath is the one path that needs only a connection, no scope, when read.
const InfoPath = "/info"

// ForRequest returns the scope a request needs from its real method and its path after prefix
// stripping: "" for GET and HEAD of InfoPath (a connection suffices, a trailing slash does not
// count), and ok=false for a method the gateway never forwards (TRACE, CONNECT, OPTIONS, WebDAV…).
func ForRequest(method, path string) (s Scope, ok bool) {
	switch method {
	case http.MethodGet, http.MethodHead:
		if path == InfoPath {
			return "", true
		}
		return Read, true
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return Write, true
	case http.MethodDelete:
		return Delete, true
	}
	return "", false
}

// Methods are the methods ForRequest accepts, for an Allow header.
const Methods = "GET, HEAD, POST, PUT, PATCH, DELETE"
