package tokens_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	eventually "github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// poll waits for cond, checking every 5 ms for at most 20 s: a bound, not a timed assertion.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventually.EventuallyTrue(t, 20*time.Second, what, cond)
}

func storeWith(t *testing.T, rdb redis.UniversalClient, keys ...string) *tokens.Store {
	t.Helper()
	kr, err := tokens.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	return tokens.NewStore(rdb, "agw:", kr, metrics.New(prometheus.NewRegistry(), "test"), nil)
}

func putConn(t *testing.T, s *tokens.Store, user, academyID string) tokens.Connection {
	t.Helper()
	now := time.Now()
	c, err := s.PutConnection(t.Context(), tokens.Connection{User: user, Status: tokens.StatusActive,
		Scopes: []string{"connect", "read"}, AccessToken: "at-" + user, RefreshToken: "rt-" + user,
		IssuedAt: now, AccessExpiresAt: now.Add(time.Hour), RefreshExpiresAt: now.Add(2 * time.Hour),
		AcademyID: academyID, AcademyUser: "academy-" + academyID, UpdatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRekey: records sealed with an old key are re-sealed with the first one (a dry run only
// counts them), current ones are left alone, and one no configured key opens is reported and
// left byte for byte as it was. The version does not move, so a refresher that read the
// record before the rekey still wins its compare-and-set.
func TestRekey(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	oldKey, newKey, lostKey := testKey(t), testKey(t), testKey(t)
	before := storeWith(t, rdb, oldKey)
	alice := putConn(t, before, "alice", "1")
	putConn(t, before, "bob", "2")
	putConn(t, storeWith(t, rdb, lostKey), "zed", "3")
	zedRec := rdb.HGet(t.Context(), "agw:{u:zed}:conn", "rec").Val()
	after := storeWith(t, rdb, newKey, oldKey)

	steps := []struct {
		name   string
		dryRun bool
		want   tokens.RekeyReport
	}{
		{"dry run", true, tokens.RekeyReport{Reencrypted: 2, Unreadable: []string{"zed"}}},
		{"rekey", false, tokens.RekeyReport{Reencrypted: 2, Unreadable: []string{"zed"}}},
		{"again", false, tokens.RekeyReport{Current: 2, Unreadable: []string{"zed"}}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got, err := after.Rekey(t.Context(), st.dryRun)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(st.want, got); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
			_, err = before.Connection(t.Context(), "alice")
			if st.dryRun && err != nil {
				t.Errorf("after a dry run the old key no longer opens alice: %v", err)
			}
			if !st.dryRun && !errors.Is(err, tokens.ErrDecrypt) {
				t.Errorf("after rekey the old key alone still opens alice (%v): not re-encrypted", err)
			}
		})
	}
	onlyNew := storeWith(t, rdb, newKey)
	got, err := onlyNew.Connection(t.Context(), "alice")
	if err != nil || got.AccessToken != alice.AccessToken || got.Version != alice.Version || got.AcademyUser != alice.AcademyUser {
		t.Fatalf("alice with only the new key = %+v, %v; want the same tokens, version %d", got, err, alice.Version)
	}
	if rec := rdb.HGet(t.Context(), "agw:{u:zed}:conn", "rec").Val(); rec != zedRec {
		t.Error("the unreadable record was changed")
	}
	refreshed := got
	refreshed.AccessToken = "at-new"
	if _, ok, err := after.CompareAndSwap(t.Context(), refreshed, alice.Version); err != nil || !ok {
		t.Errorf("a refresh that read version %d before the rekey lost its compare-and-set (%v, %v)", alice.Version, ok, err)
	}
}

// TestOnReauthReasons: the Manager reports why it marked a connection reauth_required.
func TestOnReauthReasons(t *testing.T) {
	tests := []struct {
		name    string
		reject  bool
		expired bool
		want    string
	}{
		{"the Academy refuses the refresh token", true, false, tokens.ReasonInvalidGrant},
		{"the refresh token expired by time", false, true, tokens.ReasonRefreshExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := redistest.Start(t)
			f := newRotatingAcademy(t)
			f.reject = tt.reject
			got := make(chan string, 4)
			a := newInstance(t, rs, testKey(t), f, tokens.ManagerOptions{
				OnReauth: func(_ context.Context, user, reason string) { got <- user + " " + reason }})
			c := seed(t, a.store, f, "carol")
			if tt.expired {
				c.RefreshExpiresAt = time.Now().Add(-time.Second)
				var ok bool
				var err error
				if c, ok, err = a.store.CompareAndSwap(t.Context(), c, c.Version); err != nil || !ok {
					t.Fatal(ok, err)
				}
			}
			if _, _, err := a.mgr.Token(t.Context(), c); !errors.Is(err, tokens.ErrReauthRequired) {
				t.Fatalf("Token error = %v, want ErrReauthRequired", err)
			}
			select {
			case g := <-got:
				if g != "carol "+tt.want {
					t.Errorf("OnReauth(%s), want carol %s", g, tt.want)
				}
			default:
				t.Fatal("OnReauth was not called before Token returned")
			}
		})
	}
}

// TestCountsAndIdentityIndex: on a single Redis and on Cluster (the sets, the index and the
// records in different slots), the status counts follow every write at once, MarkReplaced acts
// only on the record it was meant for, and the background round repairs counts and index.
func TestCountsAndIdentityIndex(t *testing.T) {
	topologies := []struct {
		name   string
		client func(t *testing.T) redis.UniversalClient
	}{
		{"single", func(t *testing.T) redis.UniversalClient { return redistest.Start(t).Client(t) }},
		{"cluster", func(t *testing.T) redis.UniversalClient { return redistest.StartCluster(t).Client(t) }},
	}
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			rdb := tp.client(t)
			s := storeWith(t, rdb, testKey(t))
			ctx := t.Context()
			counts := func() map[string]int64 {
				t.Helper()
				c, err := s.CountByStatus(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			want := func(active, reauth int64) map[string]int64 {
				return map[string]int64{tokens.StatusActive: active, tokens.StatusReauthRequired: reauth}
			}
			putConn(t, s, "alice", "7")
			putConn(t, s, "bob", "8")
			if diff := cmp.Diff(want(2, 0), counts()); diff != "" {
				t.Errorf("after two connections (-want +got):\n%s", diff)
			}
			if prev, err := s.PinIdentity(ctx, "7", "alice"); err != nil || prev != "" {
				t.Fatalf("PinIdentity = %q, %v", prev, err)
			}
			if prev, err := s.PinIdentity(ctx, "7", "carol"); err != nil || prev != "alice" {
				t.Fatalf("PinIdentity over alice = %q, %v", prev, err)
			}
			for _, c := range []struct {
				user, id string
				want     bool
			}{{"alice", "8", false}, {"alice", "7", true}, {"alice", "7", false}, {"nobody", "7", false}} {
				if got, err := s.MarkReplaced(ctx, c.user, c.id); err != nil || got != c.want {
					t.Errorf("MarkReplaced(%s, %s) = %v, %v; want %v", c.user, c.id, got, err, c.want)
				}
			}
			if diff := cmp.Diff(want(1, 1), counts()); diff != "" {
				t.Errorf("after marking alice replaced (-want +got):\n%s", diff)
			}
			if err := s.DeleteConnection(ctx, "bob"); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want(0, 1), counts()); diff != "" {
				t.Errorf("after deleting bob (-want +got):\n%s", diff)
			}
			if err := s.UnpinIdentity(ctx, "7", "alice"); err != nil {
				t.Fatal(err)
			}
			if h, _ := s.IdentityHolder(ctx, "7"); h != "carol" {
				t.Errorf("UnpinIdentity for alice dropped carol's entry: holder %q", h)
			}

			// Damage what the records do not guard, then let the background round mend it.
			putConn(t, s, "dora", "9")
			rdb.SAdd(ctx, "agw:status:active", "ghost")
			rdb.SRem(ctx, "agw:status:active", "dora")
			rdb.Set(ctx, "agw:identity:9", "alice", 0)
			mgr := tokens.NewManager(s, nil, metrics.New(prometheus.NewRegistry(), "test"), tokens.ManagerOptions{Interval: 10 * time.Millisecond})
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { mgr.Run(rctx); close(done) }()
			defer func() { cancel(); <-done }()
			poll(t, "the background round to repair counts and index", func() bool {
				h, _ := s.IdentityHolder(ctx, "9")
				return cmp.Equal(want(1, 1), counts()) && h == "dora"
			})
		})
	}
}
