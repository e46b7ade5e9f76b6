package tokens

import (
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/scope"
)

func TestConnectionNeedsRefresh(t *testing.T) {
	issued := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name     string
		lifetime time.Duration // of the access token
		before   time.Duration // refresh_before
		at       time.Duration // now, after issued
		want     bool
	}{
		{name: "5m token, 60s before: fresh", lifetime: 5 * time.Minute, before: time.Minute, at: 0, want: false},
		{name: "5m token, 60s before: just before 4m", lifetime: 5 * time.Minute, before: time.Minute, at: 4*time.Minute - time.Nanosecond, want: false},
		{name: "5m token, 60s before: exactly at 4m", lifetime: 5 * time.Minute, before: time.Minute, at: 4 * time.Minute, want: true},
		{name: "5m token, 60s before: after 4m", lifetime: 5 * time.Minute, before: time.Minute, at: 4*time.Minute + time.Second, want: true},
		{name: "5m token, 60s before: expired", lifetime: 5 * time.Minute, before: time.Minute, at: 6 * time.Minute, want: true},
		{name: "60s token, 60s before capped at half: 29s", lifetime: time.Minute, before: time.Minute, at: 29 * time.Second, want: false},
		{name: "60s token, 60s before capped at half: exactly 30s", lifetime: time.Minute, before: time.Minute, at: 30 * time.Second, want: true},
		{name: "60s token, 60s before capped at half: 0s", lifetime: time.Minute, before: time.Minute, at: 0, want: false},
		{name: "10s token, 1h before capped at half: 4s", lifetime: 10 * time.Second, before: time.Hour, at: 4 * time.Second, want: false},
		{name: "10s token, 1h before capped at half: 5s", lifetime: 10 * time.Second, before: time.Hour, at: 5 * time.Second, want: true},
		{name: "2m token, 60s before is exactly half: 59s", lifetime: 2 * time.Minute, before: time.Minute, at: 59 * time.Second, want: false},
		{name: "2m token, 60s before is exactly half: 60s", lifetime: 2 * time.Minute, before: time.Minute, at: time.Minute, want: true},
		{name: "before 0: just before expiry", lifetime: 5 * time.Minute, before: 0, at: 5*time.Minute - time.Nanosecond, want: false},
		{name: "before 0: at expiry", lifetime: 5 * time.Minute, before: 0, at: 5 * time.Minute, want: true},
		{name: "before 0: after expiry", lifetime: 5 * time.Minute, before: 0, at: 5*time.Minute + time.Second, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Connection{IssuedAt: issued, AccessExpiresAt: issued.Add(tt.lifetime)}
			if got := c.needsRefresh(issued.Add(tt.at), tt.before); got != tt.want {
				t.Errorf("needsRefresh(issued+%v, %v) with lifetime %v = %v, want %v", tt.at, tt.before, tt.lifetime, got, tt.want)
			}
		})
	}
}

func TestConnectionHasScope(t *testing.T) {
	c := &Connection{Scopes: []string{"connect", "read"}}
	tests := []struct {
		scope string
		want  bool
	}{
		{scope: "connect", want: true},
		{scope: "read", want: true},
		{scope: "write", want: false},
		{scope: "READ", want: false},
		{scope: "", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.scope, func(t *testing.T) {
			if got := c.HasScope(scope.Scope(tt.scope)); got != tt.want {
				t.Errorf("HasScope(%q) = %v, want %v", tt.scope, got, tt.want)
			}
		})
	}
}

func TestAPIKeyAllows(t *testing.T) {
	tests := []struct {
		name   string
		scopes []string
		scope  string
		want   bool
	}{
		{name: "no scopes allows read", scopes: nil, scope: "read", want: true},
		{name: "no scopes allows delete", scopes: nil, scope: "delete", want: true},
		{name: "empty list allows write", scopes: []string{}, scope: "write", want: true},
		{name: "narrowed allows listed", scopes: []string{"read"}, scope: "read", want: true},
		{name: "narrowed refuses write", scopes: []string{"read"}, scope: "write", want: false},
		{name: "narrowed refuses delete", scopes: []string{"read", "write"}, scope: "delete", want: false},
		{name: "narrowed allows second", scopes: []string{"read", "write"}, scope: "write", want: true},
		{name: "case matters", scopes: []string{"read"}, scope: "Read", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &APIKey{Scopes: tt.scopes}
			if got := k.Allows(scope.Scope(tt.scope)); got != tt.want {
				t.Errorf("APIKey{Scopes: %q}.Allows(%q) = %v, want %v", tt.scopes, tt.scope, got, tt.want)
			}
		})
	}
}
