package tokens_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

var ignoreHash = cmpopts.IgnoreUnexported(tokens.APIKey{})

// ids returns the ids of keys, in order.
func keyIDs(keys []tokens.APIKey) []string {
	out := []string{}
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}

// results maps import results to "line:outcome" strings, easy to compare.
func results(rs []tokens.ImportResult) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%d:%s", r.Line, r.Outcome))
	}
	return out
}

// runKeyIndexConformance checks the per-user index, the import engine's Redis side, the paged
// listings and the indexing of pre-index data against deployment d (part of
// runStoreConformance, so it runs on a single Redis, a Cluster and a Sentinel-managed master).
func runKeyIndexConformance(t *testing.T, d deployment) {
	ctx := context.Background()

	t.Run("import outcomes", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-import:", tokens.ManagerOptions{})
		k1, k2, k3 := "legacy-one-"+tokens.NewAPIKey(), "legacy-two-"+tokens.NewAPIKey(), "legacy-three-"+tokens.NewAPIKey()
		r1, err := p.a.store.CreateKey(ctx, k1, tokens.APIKey{User: "alice", Scopes: []string{"read"}, Name: "a"})
		if err != nil {
			t.Fatal(err)
		}
		r2, err := p.a.store.CreateKey(ctx, k2, tokens.APIKey{User: "bob", Name: "b"})
		if err != nil {
			t.Fatal(err)
		}
		entries := []tokens.ImportEntry{
			{Line: 2, User: "carol", Key: k3, Name: "c"},                                    // new
			{Line: 3, User: "alice", Key: k1, Scopes: []string{"write", "read"}, Name: "a"}, // new scopes
			{Line: 4, User: "alice", Key: k2, Name: "b"},                                    // bob's
			{Line: 5, User: "bob", Key: k2, Name: "b"},                                      // as it is
		}
		want := []string{"2:created", "3:updated", "4:conflict", "5:unchanged"}

		dry, err := p.b.store.ImportKeys(ctx, entries, true)
		if err != nil {
			t.Fatalf("dry run: %v", err)
		}
		if diff := cmp.Diff(want, results(dry)); diff != "" {
			t.Errorf("dry-run outcomes (-want +got):\n%s", diff)
		}
		if dry[2].ID != r2.ID {
			t.Errorf("conflict names key %s, want bob's %s", dry[2].ID, r2.ID)
		}
		if _, err := p.a.store.KeyByHash(ctx, tokens.HashKey(k3)); !errors.Is(err, tokens.ErrUnknownKey) {
			t.Errorf("after a dry run the new key resolves (%v), want ErrUnknownKey", err)
		}
		if got, _ := p.a.store.KeyByHash(ctx, tokens.HashKey(k1)); !slices.Equal(got.Scopes, []string{"read"}) {
			t.Errorf("after a dry run alice's key has scopes %v, want [read]", got.Scopes)
		}

		got, err := p.b.store.ImportKeys(ctx, entries, false)
		if err != nil {
			t.Fatalf("import: %v", err)
		}
		if diff := cmp.Diff(want, results(got)); diff != "" {
			t.Errorf("outcomes (-want +got):\n%s", diff)
		}
		if k, err := p.a.store.KeyByHash(ctx, tokens.HashKey(k3)); err != nil || k.User != "carol" || k.Name != "c" {
			t.Errorf("imported key resolves to %+v, %v; want carol's", k, err)
		}
		if k, _ := p.a.store.KeyByHash(ctx, tokens.HashKey(k1)); !slices.Equal(k.Scopes, []string{"write", "read"}) || !k.CreatedAt.Equal(r1.CreatedAt) {
			t.Errorf("updated key = %+v, want scopes [write read] and the original created_at %v", k, r1.CreatedAt)
		}
		if k, _ := p.a.store.KeyByHash(ctx, tokens.HashKey(k2)); k.User != "bob" {
			t.Errorf("conflicting key now belongs to %q, want bob still", k.User)
		}
		carol, err := p.a.store.Keys(ctx, "carol")
		if err != nil || len(carol) != 1 {
			t.Fatalf("Keys(carol) = %v, %v; want the imported key", carol, err)
		}
		alice, _ := p.a.store.Keys(ctx, "alice")
		if diff := cmp.Diff([]string{r1.ID}, keyIDs(alice)); diff != "" {
			t.Errorf("Keys(alice) after a conflict on bob's key (-want +got):\n%s", diff)
		}

		again, err := p.a.store.ImportKeys(ctx, entries, false)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"2:unchanged", "3:unchanged", "4:conflict", "5:unchanged"}, results(again)); diff != "" {
			t.Errorf("second run (-want +got):\n%s", diff)
		}
	})

	t.Run("import repeats a key", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-import-repeat:", tokens.ManagerOptions{})
		k := "legacy-repeat-" + tokens.NewAPIKey()
		entries := []tokens.ImportEntry{
			{Line: 1, User: "dan", Key: k},
			{Line: 2, User: "dan", Key: k, Scopes: []string{"read"}},
			{Line: 3, User: "eve", Key: k},
			{Line: 4, User: "dan", Key: k, Scopes: []string{"read"}},
		}
		want := []string{"1:created", "2:updated", "3:conflict", "4:unchanged"}
		for _, dry := range []bool{true, false} {
			got, err := p.a.store.ImportKeys(ctx, entries, dry)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, results(got)); diff != "" {
				t.Errorf("dry run %v: outcomes (-want +got):\n%s", dry, diff)
			}
		}
	})

	t.Run("import many", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-import-many:", tokens.ManagerOptions{})
		var entries []tokens.ImportEntry
		for i := range 2500 { // several batches
			entries = append(entries, tokens.ImportEntry{Line: i + 2, User: fmt.Sprintf("u%03d", i%300), Key: fmt.Sprintf("legacy-many-%05d", i)})
		}
		got, err := p.a.store.ImportKeys(ctx, entries, false)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range got {
			if r.Outcome != tokens.ImportCreated || r.Line != i+2 {
				t.Fatalf("result %d = %+v, want line %d created", i, r, i+2)
			}
		}
		keys, err := p.b.store.Keys(ctx, "u007")
		if err != nil || len(keys) != 9 {
			t.Errorf("Keys(u007) = %d keys, %v; want 9", len(keys), err)
		}
	})

	t.Run("index and revocation", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-index:", tokens.ManagerOptions{})
		var fay []tokens.APIKey
		for i := range 3 {
			k, err := p.a.store.CreateKey(ctx, tokens.NewAPIKey(), tokens.APIKey{User: "fay", CreatedAt: time.Unix(int64(1000+i), 0).UTC()})
			if err != nil {
				t.Fatal(err)
			}
			fay = append(fay, k)
		}
		gusKey := tokens.NewAPIKey()
		gus, err := p.a.store.CreateKey(ctx, gusKey, tokens.APIKey{User: "gus"})
		if err != nil {
			t.Fatal(err)
		}
		// A registration of gus's key for fay fails and leaves fay's index as it was.
		if _, err := p.b.store.CreateKey(ctx, gusKey, tokens.APIKey{User: "fay"}); !errors.Is(err, tokens.ErrKeyExists) {
			t.Fatalf("CreateKey of gus's key for fay = %v, want ErrKeyExists", err)
		}
		got, err := p.b.store.Keys(ctx, "fay")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(fay, got, ignoreHash); diff != "" {
			t.Errorf("Keys(fay) (-want +got):\n%s", diff)
		}
		if _, err := p.a.store.DeleteKey(ctx, fay[1].ID); err != nil {
			t.Fatal(err)
		}
		users, _, err := p.b.store.UsersPage(ctx, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		wantUsers := []tokens.UserSummary{
			{User: "fay", Status: tokens.StatusNotConnected, Keys: 2},
			{User: "gus", Status: tokens.StatusNotConnected, Keys: 1},
		}
		if diff := cmp.Diff(wantUsers, users); diff != "" {
			t.Errorf("UsersPage (-want +got):\n%s", diff)
		}
		deleted, err := p.b.store.DeleteUserKeys(ctx, "fay")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{fay[0].ID, fay[2].ID}, keyIDs(deleted)); diff != "" {
			t.Errorf("DeleteUserKeys(fay) (-want +got):\n%s", diff)
		}
		for _, k := range fay {
			if _, err := p.a.store.DeleteKey(ctx, k.ID); !errors.Is(err, tokens.ErrNotFound) {
				t.Errorf("key %s after DeleteUserKeys: %v, want ErrNotFound", k.ID, err)
			}
		}
		if k, err := p.a.store.KeyByHash(ctx, tokens.HashKey(gusKey)); err != nil || k.ID != gus.ID {
			t.Errorf("gus's key after fay's revocation = %v, %v; want it kept", k.ID, err)
		}
		users, _, _ = p.b.store.UsersPage(ctx, "", 10)
		if diff := cmp.Diff(wantUsers[1:], users); diff != "" {
			t.Errorf("UsersPage after revoking fay's keys (-want +got):\n%s", diff)
		}
	})

	t.Run("paging", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-paging:", tokens.ManagerOptions{})
		var all []tokens.APIKey
		for i, u := range []string{"hal", "ida", "hal", "jon", "hal", "ida", "kim"} {
			k, err := p.a.store.CreateKey(ctx, tokens.NewAPIKey(), tokens.APIKey{User: u, CreatedAt: time.Unix(int64(2000+i), 0).UTC()})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, k)
		}
		seed(t, p.a.store, p.academy, "ida")
		seed(t, p.a.store, p.academy, "lee") // a connection without keys
		byUser := slices.Clone(all)
		slices.SortStableFunc(byUser, func(a, b tokens.APIKey) int { return strings.Compare(a.User, b.User) })

		for _, limit := range []int{1, 2, 3, 100} {
			var got []tokens.APIKey
			for cursor, n := "", 0; n < 20; n++ {
				page, next, err := p.b.store.KeysPage(ctx, "", cursor, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > limit {
					t.Fatalf("page of %d keys, limit %d", len(page), limit)
				}
				got = append(got, page...)
				if cursor = next; cursor == "" {
					break
				}
			}
			if diff := cmp.Diff(keyIDs(byUser), keyIDs(got)); diff != "" {
				t.Errorf("all keys with limit %d (-want +got):\n%s", limit, diff)
			}
			got = nil
			for cursor, n := "", 0; n < 20; n++ {
				page, next, err := p.b.store.KeysPage(ctx, "hal", cursor, limit)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, page...)
				if cursor = next; cursor == "" {
					break
				}
			}
			if diff := cmp.Diff([]string{all[0].ID, all[2].ID, all[4].ID}, keyIDs(got)); diff != "" {
				t.Errorf("hal's keys with limit %d (-want +got):\n%s", limit, diff)
			}
			var users []string
			for cursor, n := "", 0; n < 20; n++ {
				page, next, err := p.b.store.UsersPage(ctx, cursor, limit)
				if err != nil {
					t.Fatal(err)
				}
				for _, u := range page {
					users = append(users, u.User+":"+u.Status+":"+strconv.Itoa(u.Keys))
				}
				if cursor = next; cursor == "" {
					break
				}
			}
			want := []string{"hal:not_connected:3", "ida:active:2", "jon:not_connected:1", "kim:not_connected:1", "lee:active:0"}
			if diff := cmp.Diff(want, users); diff != "" {
				t.Errorf("users with limit %d (-want +got):\n%s", limit, diff)
			}
			var conns []string
			for cursor, n := "", 0; n < 20; n++ {
				page, next, err := p.b.store.ConnectionsPage(ctx, cursor, limit)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range page {
					conns = append(conns, c.User)
				}
				if cursor = next; cursor == "" {
					break
				}
			}
			if diff := cmp.Diff([]string{"ida", "lee"}, conns); diff != "" {
				t.Errorf("connections with limit %d (-want +got):\n%s", limit, diff)
			}
		}
		_, userCursor, _ := p.b.store.UsersPage(ctx, "", 1)
		for _, bad := range []string{"nonsense", "AAAA", userCursor} {
			if _, _, err := p.b.store.KeysPage(ctx, "", bad, 10); !errors.Is(err, tokens.ErrBadCursor) {
				t.Errorf("KeysPage(cursor %q) = %v, want ErrBadCursor", bad, err)
			}
		}
		if _, _, err := p.b.store.ConnectionsPage(ctx, userCursor, 10); !errors.Is(err, tokens.ErrBadCursor) {
			t.Errorf("ConnectionsPage(a users cursor) = %v, want ErrBadCursor", err)
		}
	})

	t.Run("pre-index data", func(t *testing.T) {
		t.Parallel()
		const prefix = "agw-preindex:"
		rdb := d.client(t)
		// Records as the version before the index wrote them: Pkey:ID, Pkeys, Pusers only.
		var want []string
		for i := range 5 {
			key := fmt.Sprintf("legacy-pre-%d", i)
			hash := tokens.HashKey(key)
			id := hash[:16]
			rec, _ := json.Marshal(map[string]any{"id": id, "user": "old" + strconv.Itoa(i%2), "scopes": []string{},
				"name": "", "created_at": time.Unix(int64(3000+i), 0).UTC(), "hash": hash})
			if err := rdb.HSet(ctx, prefix+"key:"+id, "rec", rec).Err(); err != nil {
				t.Fatal(err)
			}
			if err := rdb.SAdd(ctx, prefix+"keys", id).Err(); err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 {
				want = append(want, id)
			}
		}
		p := newPair(t, d, prefix, tokens.ManagerOptions{})
		seed(t, p.a.store, p.academy, "oldconn")
		if err := rdb.ZRem(ctx, prefix+"directory", "oldconn").Err(); err != nil { // as if written before the directory
			t.Fatal(err)
		}
		if n, _ := rdb.Exists(ctx, prefix+"{u:old0}:keys", prefix+"keyindex").Result(); n != 0 {
			t.Fatalf("%d index keys exist before first use", n)
		}
		got, err := p.b.store.Keys(ctx, "old0")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, keyIDs(got)); diff != "" {
			t.Errorf("Keys(old0) of pre-index records (-want +got):\n%s", diff)
		}
		if v, _ := rdb.Get(ctx, prefix+"keyindex").Result(); v != "1" {
			t.Errorf("index marker = %q after first use, want 1", v)
		}
		users, _, err := p.a.store.UsersPage(ctx, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, u := range users {
			names = append(names, u.User)
		}
		if diff := cmp.Diff([]string{"old0", "old1", "oldconn"}, names); diff != "" {
			t.Errorf("users after indexing (-want +got):\n%s", diff)
		}
		st, err := p.a.store.ReindexKeys(ctx) // again: harmless
		if err != nil || st.Keys != 5 {
			t.Errorf("ReindexKeys = %+v, %v; want 5 keys", st, err)
		}
		again, _ := p.b.store.Keys(ctx, "old0")
		if diff := cmp.Diff(want, keyIDs(again)); diff != "" {
			t.Errorf("Keys(old0) after a second reindex (-want +got):\n%s", diff)
		}
	})
}

// hammerEnv names the variables that make TestKeyIndexHammer a worker process.
const (
	hammerAddrs   = "AGW_HAMMER_ADDRS"
	hammerCluster = "AGW_HAMMER_CLUSTER"
	hammerSeed    = "AGW_HAMMER_SEED"
)

// The workers go through hammerKeys keys one at a time, together (a barrier in Redis before
// each), each doing hammerBurst random operations on the key for random users; a key is never
// touched after its burst, so an index left wrong by a race stays wrong for the check to see.
const (
	hammerKeys  = 400
	hammerBurst = 6
	hammerUsers = 3
	hammerPref  = "agw-hammer:"
)

func hammerKey(i int) string { return fmt.Sprintf("legacy-hammer-key-%02d", i) }

// TestKeyIndexTwoProcesses runs two OS processes (this test binary, as TestKeyIndexHammer) that
// create, import, revoke and bulk-revoke the same few keys for the same few users at once,
// then checks the index against the records: every record is in its user's index (without any
// reader's repair), and Keys lists exactly the records.
func TestKeyIndexTwoProcesses(t *testing.T) {
	for _, tp := range []struct {
		name  string
		start func(t *testing.T) (addrs []string, cluster bool)
	}{
		{"single", func(t *testing.T) ([]string, bool) { return []string{redistest.Start(t).Addr}, false }},
		{"cluster", func(t *testing.T) ([]string, bool) { return redistest.StartCluster(t).Addrs, true }},
	} {
		t.Run(tp.name, func(t *testing.T) {
			t.Parallel()
			addrs, cluster := tp.start(t)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			var procs []*exec.Cmd
			var outs []*strings.Builder
			for seed := range 2 {
				cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestKeyIndexHammer$", "-test.count=1")
				cmd.Env = append(os.Environ(), hammerAddrs+"="+strings.Join(addrs, ","),
					hammerCluster+"="+strconv.FormatBool(cluster), hammerSeed+"="+strconv.Itoa(seed+1))
				out := &strings.Builder{}
				cmd.Stdout, cmd.Stderr = out, out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				procs, outs = append(procs, cmd), append(outs, out)
			}
			for i, cmd := range procs {
				if err := cmd.Wait(); err != nil {
					t.Fatalf("worker %d: %v\n%s", i, err, outs[i])
				}
				if !strings.Contains(outs[i].String(), "hammered") {
					t.Fatalf("worker %d did not run its loop:\n%s", i, outs[i])
				}
			}

			rdb := hammerClient(addrs, cluster)
			defer rdb.Close()
			store := tokens.NewStore(rdb, hammerPref, mustKeyring(t), metrics.New(prometheus.NewRegistry(), "t"), nil)
			truth := map[string][]string{} // user → ids of its records
			for i := range hammerKeys {
				id := tokens.HashKey(hammerKey(i))[:16]
				rec, err := rdb.HGet(ctx, hammerPref+"key:"+id, "rec").Result()
				if errors.Is(err, redis.Nil) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				var k struct{ User string }
				if err := json.Unmarshal([]byte(rec), &k); err != nil {
					t.Fatal(err)
				}
				truth[k.User] = append(truth[k.User], id)
			}
			for u := range hammerUsers {
				user := fmt.Sprintf("user%d", u)
				raw, err := rdb.HKeys(ctx, hammerPref+"{u:"+user+"}:keys").Result()
				if err != nil {
					t.Fatal(err)
				}
				for _, id := range truth[user] {
					if !slices.Contains(raw, id) {
						t.Errorf("record %s of %s is missing from the index %v", id, user, raw)
					}
				}
				keys, err := store.Keys(ctx, user)
				if err != nil {
					t.Fatal(err)
				}
				got := keyIDs(keys)
				slices.Sort(got)
				want := append([]string{}, truth[user]...)
				slices.Sort(want)
				if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("Keys(%s) against the records (-want +got):\n%s", user, diff)
				}
			}
			n := 0
			for _, ids := range truth {
				n += len(ids)
			}
			t.Logf("%d of %d keys have a record at the end", n, hammerKeys)
		})
	}
}

// TestKeyIndexHammer is the worker of TestKeyIndexTwoProcesses; alone it does nothing.
func TestKeyIndexHammer(t *testing.T) {
	addrs := os.Getenv(hammerAddrs)
	if addrs == "" {
		t.Skip("worker of TestKeyIndexTwoProcesses")
	}
	cluster, _ := strconv.ParseBool(os.Getenv(hammerCluster))
	seed, _ := strconv.Atoi(os.Getenv(hammerSeed))
	rdb := hammerClient(strings.Split(addrs, ","), cluster)
	defer rdb.Close()
	store := tokens.NewStore(rdb, hammerPref, mustKeyring(t), metrics.New(prometheus.NewRegistry(), "t"), nil)
	rng := rand.New(rand.NewPCG(uint64(seed), 42))
	ctx := t.Context()
	for b := range hammerKeys {
		// Barrier: tell the other worker this one is at key b, wait until it is too.
		other := 3 - seed
		if err := rdb.RPush(ctx, fmt.Sprintf("%sbarrier:%d:%d", hammerPref, b, other), 1).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.BLPop(ctx, time.Minute, fmt.Sprintf("%sbarrier:%d:%d", hammerPref, b, seed)).Err(); err != nil {
			t.Fatalf("barrier %d: %v", b, err)
		}
		key := hammerKey(b)
		for range hammerBurst {
			user := fmt.Sprintf("user%d", rng.IntN(hammerUsers))
			var err error
			switch op := rng.IntN(12); {
			case op >= 10: // a reader: repairs the entries it finds stale
				_, err = store.Keys(ctx, user)
			case op < 4:
				_, err = store.CreateKey(ctx, key, tokens.APIKey{User: user})
				if errors.Is(err, tokens.ErrKeyExists) {
					err = nil
				}
			case op < 6:
				_, err = store.ImportKeys(ctx, []tokens.ImportEntry{{Line: 1, User: user, Key: key, Name: strconv.Itoa(rng.IntN(3))}}, false)
			case op < 9:
				_, err = store.DeleteKey(ctx, tokens.HashKey(key)[:16])
				if errors.Is(err, tokens.ErrNotFound) {
					err = nil
				}
			default:
				_, err = store.DeleteUserKeys(ctx, user)
			}
			if err != nil {
				t.Fatalf("op on %s for %s: %v", key, user, err)
			}
		}
	}
	fmt.Println("hammered")
}

func hammerClient(addrs []string, cluster bool) redis.UniversalClient {
	if cluster {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	}
	return redis.NewClient(&redis.Options{Addr: addrs[0]})
}

func mustKeyring(t testing.TB) *tokens.Keyring {
	t.Helper()
	kr, err := tokens.NewKeyring([]string{"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}
