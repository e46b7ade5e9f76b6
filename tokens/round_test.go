package tokens

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/metrics"
)

// TestRoundRepairsAcrossBatches: the background round walks the connections a batch at a time
// (more users here than one batch holds) and still repairs the status sets (a user missing, a
// user filed under the wrong status, a member without a record) and the identity index (an
// entry missing, an entry naming a user that does not hold the id, and an entry naming a valid
// holder that may sit in another batch, which is kept).
func TestRoundRepairsAcrossBatches(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	academy := httptest.NewServer(http.NotFoundHandler())
	defer academy.Close()
	kr, err := NewKeyring([]string{"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), "test")
	store := NewStore(rdb, "rnd:", kr, m, nil)
	mg := NewManager(store, NewAcademy(academy.Client(), AcademyConfig{RefreshURL: academy.URL}), m, ManagerOptions{})
	ctx := context.Background()
	now := time.Now().UTC()
	const n = 3*indexBatch + 7
	academyID := map[int]string{4: "ac4", 5: "ac5", 900: "ac5", 1100: "ac-other"}
	for i := range n {
		c := Connection{User: fmt.Sprintf("user%04d", i), Status: StatusActive, AccessToken: "at", RefreshToken: "rt",
			IssuedAt: now, AccessExpiresAt: now.Add(time.Hour), RefreshExpiresAt: now.Add(24 * time.Hour), UpdatedAt: now,
			AcademyID: academyID[i]}
		if _, err := store.PutConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	active, reauth := store.statusKey(StatusActive), store.statusKey(StatusReauthRequired)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rdb.SRem(ctx, active, "user0001").Err())
	must(rdb.SRem(ctx, active, "user0002").Err())
	must(rdb.SAdd(ctx, reauth, "user0002").Err())
	must(rdb.SAdd(ctx, active, "ghost").Err())
	must(rdb.Set(ctx, store.identityKey("ac4"), "user1100", 0).Err())
	must(rdb.Set(ctx, store.identityKey("ac5"), "user0900", 0).Err())

	mg.tick(ctx)

	if got, _ := rdb.SCard(ctx, active).Result(); got != n {
		t.Errorf("SCARD active = %d, want %d", got, n)
	}
	if got, _ := rdb.SCard(ctx, reauth).Result(); got != 0 {
		t.Errorf("SCARD reauth_required = %d, want 0", got)
	}
	if in, _ := rdb.SIsMember(ctx, active, "ghost").Result(); in {
		t.Error("a member without a record stayed in the active set")
	}
	for id, want := range map[string]string{"ac4": "user0004", "ac5": "user0900", "ac-other": "user1100"} {
		if got, _ := rdb.Get(ctx, store.identityKey(id)).Result(); got != want {
			t.Errorf("identity index %s = %q, want %q", id, got, want)
		}
	}
}
