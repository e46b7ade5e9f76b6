package tokens

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/metrics"
)

// TestBackgroundTick: one round of the Manager's periodic work refreshes the idle connection
// whose refresh token is about to expire (and only that one), counts connections by status for
// the gauge, and writes the keys' coalesced last-use times.
func TestBackgroundTick(t *testing.T) {
	rs := redistest.Start(t)
	var refreshes atomic.Int32
	academy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := refreshes.Add(1)
		fmt.Fprintf(w, `{"access_token":"at_ka%d","expires_in":5,"refresh_token":"rt_ka%d","refresh_expires_in":60}`, n, n)
	}))
	defer academy.Close()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	kr, err := NewKeyring([]string{base64.StdEncoding.EncodeToString(raw)})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), "test")
	store := NewStore(rs.Client(t), "agw:", kr, m, nil)
	ac := NewAcademy(academy.Client(), AcademyConfig{RefreshURL: academy.URL + "/refresh"})
	mg := NewManager(store, ac, m, ManagerOptions{KeepAlive: true, Interval: 30 * time.Second, RefreshBefore: time.Minute})
	ctx := context.Background()
	now := time.Now()
	put := func(user, status string, refreshExpires time.Time) {
		t.Helper()
		if _, err := store.PutConnection(ctx, Connection{User: user, Status: status, AccessToken: "at_" + user, RefreshToken: "rt_" + user,
			IssuedAt: now, AccessExpiresAt: now.Add(5 * time.Minute), RefreshExpiresAt: refreshExpires}); err != nil {
			t.Fatal(err)
		}
	}
	put("idle", StatusActive, now.Add(90*time.Second))      // within 2 rounds + refresh_before: refreshed
	put("fresh", StatusActive, now.Add(time.Hour))          // far from expiry: left alone
	put("gone", StatusReauthRequired, now.Add(time.Second)) // needs a person, not a refresh
	key := NewAPIKey()
	k, err := store.CreateKey(ctx, key, APIKey{User: "fresh"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mg.LookupKey(ctx, key); err != nil {
		t.Fatal(err)
	}

	mg.tick(ctx)

	if n := refreshes.Load(); n != 1 {
		t.Fatalf("keep-alive made %d refreshes, want 1", n)
	}
	idle, err := store.Connection(ctx, "idle")
	if err != nil || idle.RefreshToken != "rt_ka1" || idle.RefreshExpiresAt.Before(now.Add(59*time.Minute)) {
		t.Errorf("idle connection after keep-alive = %q until %v (%v), want rt_ka1 for another hour", idle.RefreshToken, idle.RefreshExpiresAt, err)
	}
	if got := testutil.ToFloat64(m.TokenRefreshes.WithLabelValues(metrics.TriggerKeepAlive, metrics.ResultSuccess)); got != 1 {
		t.Errorf("keep_alive refreshes metric = %v, want 1", got)
	}
	for status, want := range map[string]float64{StatusActive: 2, StatusReauthRequired: 1} {
		if got := testutil.ToFloat64(m.Connections.WithLabelValues(status)); got != want {
			t.Errorf("connections{status=%q} = %v, want %v", status, got, want)
		}
	}
	stored, err := store.keyByID(ctx, k.ID)
	if err != nil || stored.LastUsedAt.IsZero() {
		t.Errorf("last_used_at after the flush = %v (%v), want set", stored.LastUsedAt, err)
	}
}
