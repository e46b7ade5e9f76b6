package scope

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestForRequest(t *testing.T) {
	tests := []struct {
		method, path string
		want         Scope
		ok           bool
	}{
		{http.MethodGet, "/movies", Read, true},
		{http.MethodHead, "/movies", Read, true},
		{http.MethodGet, "/info", "", true},
		{http.MethodHead, "/info", "", true},
		{http.MethodGet, "/info/", Read, true},
		{http.MethodGet, "/info/x", Read, true},
		{http.MethodGet, "/information", Read, true},
		{http.MethodGet, "/api/v1/info", Read, true}, // exempt only after prefix stripping
		{http.MethodDelete, "/info", Delete, true},
		{http.MethodPost, "/info", Write, true},
		{http.MethodPost, "/movies", Write, true},
		{http.MethodPut, "/movies/1", Write, true},
		{http.MethodPatch, "/movies/1", Write, true},
		{http.MethodDelete, "/movies/1", Delete, true},
		{http.MethodOptions, "/movies", "", false},
		{http.MethodTrace, "/movies", "", false},
		{http.MethodConnect, "/movies", "", false},
		{"PROPFIND", "/movies", "", false},
		{"MKCOL", "/movies", "", false},
		{"get", "/movies", "", false}, // methods are case-sensitive (RFC 9110 §9.1)
		{"", "/movies", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			got, ok := ForRequest(tt.method, tt.path)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ForRequest(%q, %q) = %q, %v; want %q, %v", tt.method, tt.path, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, s := range All {
		if got, err := Parse(string(s)); err != nil || got != s {
			t.Errorf("Parse(%q) = %q, %v", s, got, err)
		}
	}
	for _, bad := range []string{"", "READ", "admin", " read"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}

func TestParseList(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		allowed []Scope
		want    []string
		wantErr bool
	}{
		{"empty", nil, KeyScopes, nil, false},
		{"dedupe keeps order", []string{"write", "read", "write"}, KeyScopes, []string{"write", "read"}, false},
		{"connect not for keys", []string{"connect"}, KeyScopes, nil, true},
		{"connect for config", []string{"connect", "read"}, All, []string{"connect", "read"}, false},
		{"unknown", []string{"read", "admin"}, All, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseList(tt.in, tt.allowed)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestFields(t *testing.T) {
	for in, want := range map[string][]string{
		"":                 {},
		"read":             {"read"},
		"read,write":       {"read", "write"},
		"read write":       {"read", "write"},
		" read , delete  ": {"read", "delete"},
	} {
		if diff := cmp.Diff(want, Fields(in)); diff != "" {
			t.Errorf("Fields(%q) (-want +got)\n%s", in, diff)
		}
	}
}

func FuzzFields(f *testing.F) {
	for _, seed := range []string{"", "read,write", "read write delete", ",,", "read,,write "} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, it := range Fields(s) {
			if it == "" {
				t.Fatalf("Fields(%q) has an empty item", s)
			}
			if _, err := ParseList([]string{it}, All); err == nil {
				if _, err := Parse(it); err != nil {
					t.Fatalf("ParseList accepted %q that Parse refuses", it)
				}
			}
		}
	})
}
