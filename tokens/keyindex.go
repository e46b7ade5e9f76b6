package tokens

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The per-user key index and the user directory (issue 10).
//
//	P{u:USER}:keys   hash  key id → mark (a random token): a superset of the ids of USER's key records
//	Pdirectory       zset  every user that holds (or held) a key or a connection, score 0, so
//	                       ZRANGE BYLEX pages through them in user order
//	Pkeyindex        string  "1" once the records written before the index were indexed
//
// Why the index is not in the same transaction as the record. A key record lives at Pkey:ID,
// named by a hash of the key, because the request path knows only the key; its Cluster slot is
// therefore unrelated to the slot of the user's hash tag, where the index lives, and no Lua
// script or MULTI can span both on a Cluster. Moving the record into the user's slot would cost
// every cache miss a second round trip (key → user → record) and would make revocation a
// two-slot operation too. Instead the record stays the single source of truth (a key works if
// and only if its record exists: revocation is one DEL) and the index is kept a superset of it
// by ordering, with a mark making removals safe:
//
//   - create: mark the entry (HSET index id to a new random token) before the record, HSETNX
//     the record, mark the entry again (a new token) after;
//   - remove (revocation, or repair of an entry whose record is gone or is another user's):
//     read the entry's mark m first, then delete or observe the record, then HDEL the entry only
//     if its mark is still m (one script, in the index's slot).
//
// A removal can drop the entry of a record that exists at the end only if that record was
// written after the removal observed it absent; the create's second mark then comes after the
// mark m was read, so either the HDEL finds another mark and does nothing, or the mark comes
// after the HDEL and puts the entry back. Marks are random rather than counters: a counter
// restarts when its field is deleted and re-created, and a removal holding an old value could
// then delete a newer entry (an A-B-A race that two processes hammering the same keys on a
// Cluster did hit). Hence every existing record is indexed
// once the writers are done (TestKeyIndexTwoProcesses hammers this from two processes), and the
// only cost of a crash between steps is an extra entry, which readers filter out (they read the
// records anyway) and remove. The one window left is a process dying between HSETNX and the
// second HINCRBY while a concurrent removal of the same id runs: `keys reindex` heals it.
//
// Records written before the index existed are indexed on first use (ensureIndexed: one SSCAN
// of Pkeys, in batches) or by `keys reindex`; both only add entries, so they are safe while
// replicas serve, and replicas of the previous version that keep writing unindexed records
// during a rolling upgrade are caught by running `keys reindex` once the rollout is done.

func (s *Store) keyIndexKey(user string) string { return s.prefix + "{u:" + user + "}:keys" }
func (s *Store) directoryKey() string           { return s.prefix + "directory" }
func (s *Store) indexedKey() string             { return s.prefix + "keyindex" }

// unindexScript deletes field ARGV[1] of the index KEYS[1] if its mark is still ARGV[2].
const unindexScript = `if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0`

// indexBatch bounds the commands of one pipeline in index maintenance and listing.
const indexBatch = 500

// indexEntry is one entry of a user's index.
type indexEntry struct {
	id  string
	gen string // its mark
}

// userIndex reads the index of each of users in one pipelined round trip.
func (s *Store) userIndex(ctx context.Context, users []string) ([][]indexEntry, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(users))
	for i, u := range users {
		cmds[i] = pipe.HGetAll(ctx, s.keyIndexKey(u))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read key index: %w", err)
	}
	out := make([][]indexEntry, len(users))
	for i, c := range cmds {
		for id, gen := range c.Val() {
			out[i] = append(out[i], indexEntry{id, gen})
		}
	}
	return out, nil
}

// storedRecord is one key record as read, with its raw JSON (for compare-and-set).
type storedRecord struct {
	raw  string
	key  storedKey
	used string
}

// readRecords reads the key records of ids in pipelined batches; a missing record is nil.
func (s *Store) readRecords(ctx context.Context, ids []string) ([]*storedRecord, error) {
	out := make([]*storedRecord, 0, len(ids))
	for batch := range slices.Chunk(ids, indexBatch) {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(batch))
		for i, id := range batch {
			cmds[i] = pipe.HMGet(ctx, s.apiKeyKey(id), "rec", "used")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("read key records: %w", err)
		}
		for i, c := range cmds {
			r, err := decodeRecord(batch[i], c.Val())
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// decodeRecord turns the HMGET "rec", "used" values of key id into a storedRecord; nil when the
// record is missing.
func decodeRecord(id string, vals []any) (*storedRecord, error) {
	raw := field(vals, 0)
	if raw == "" {
		return nil, nil
	}
	r := &storedRecord{raw: raw, used: field(vals, 1)}
	if err := json.Unmarshal([]byte(raw), &r.key); err != nil {
		return nil, fmt.Errorf("decode key %s: %w", id, err)
	}
	return r, nil
}

// apiKey returns the record as an APIKey with its last use.
func (r *storedRecord) apiKey() APIKey {
	k := r.key.APIKey
	k.hash = r.key.Hash
	if r.used != "" {
		ms, _ := strconv.ParseInt(r.used, 10, 64)
		k.LastUsedAt = unixMilliUTC(ms)
	}
	return k
}

// staleEntry is an index entry whose record is gone or belongs to another user.
type staleEntry struct {
	user string
	indexEntry
}

// newMark returns a fresh index mark: 64 random bits, never equal to an earlier one.
func newMark() string { return randomHex(8) }

// unindex removes stale entries, each only if its mark is still the one read.
func (s *Store) unindex(ctx context.Context, stale []staleEntry) error {
	for batch := range slices.Chunk(stale, indexBatch) {
		pipe := s.rdb.Pipeline()
		for _, e := range batch {
			pipe.Eval(ctx, unindexScript, []string{s.keyIndexKey(e.user)}, e.id, e.gen)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("repair key index: %w", err)
		}
	}
	return nil
}

// keysOf returns the keys of each of users, oldest first, reading their indexes and records
// (O(those users' keys)) and repairing entries that no longer hold.
func (s *Store) keysOf(ctx context.Context, users []string) ([][]APIKey, error) {
	if err := s.ensureIndexed(ctx); err != nil {
		return nil, err
	}
	idx, err := s.userIndex(ctx, users)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, entries := range idx {
		for _, e := range entries {
			ids = append(ids, e.id)
		}
	}
	recs, err := s.readRecords(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([][]APIKey, len(users))
	var stale []staleEntry
	n := 0
	for i, entries := range idx {
		for _, e := range entries {
			r := recs[n]
			n++
			if r == nil || r.key.User != users[i] {
				stale = append(stale, staleEntry{users[i], e})
				continue
			}
			out[i] = append(out[i], r.apiKey())
		}
		slices.SortFunc(out[i], compareKeys)
	}
	if err := s.unindex(ctx, stale); err != nil {
		return nil, err
	}
	return out, nil
}

// compareKeys orders keys oldest first, then by id.
func compareKeys(a, b APIKey) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// ensureIndexed indexes the records written before the index existed, once per Redis (and
// once per process that finds the marker missing).
func (s *Store) ensureIndexed(ctx context.Context) error {
	if s.indexed.Load() {
		return nil
	}
	s.indexMu.Lock() // concurrent first uses wait for one indexing rather than each doing it
	defer s.indexMu.Unlock()
	if s.indexed.Load() {
		return nil
	}
	v, err := s.rdb.Get(ctx, s.indexedKey()).Result()
	if err != nil && err != redis.Nil {
		return fmt.Errorf("read key index marker: %w", err)
	}
	if v == "" {
		if _, err := s.reindex(ctx); err != nil {
			return err
		}
	}
	s.indexed.Store(true)
	return nil
}

// ReindexStats is what ReindexKeys did.
type ReindexStats struct {
	// Keys is the number of key records seen (and indexed: adding an entry twice is harmless).
	Keys int
	// Users is the number of users entered into the directory.
	Users int
}

// ReindexKeys adds every key record to its user's index and every user holding a key or a
// connection to the directory, then records that the data is indexed. It only adds entries, so
// it is safe while replicas serve and may be run again at any time (after a rolling upgrade
// from a version without the index, for instance). Memory stays bounded: it walks the sets with
// SSCAN in batches.
func (s *Store) ReindexKeys(ctx context.Context) (ReindexStats, error) {
	st, err := s.reindex(ctx)
	if err == nil {
		s.indexed.Store(true)
	}
	return st, s.observe("reindex_keys", err)
}

func (s *Store) reindex(ctx context.Context) (ReindexStats, error) {
	var st ReindexStats
	users := map[string]struct{}{} // per batch only
	err := s.scanSet(ctx, s.apiKeysKey(), func(ids []string) error {
		recs, err := s.readRecords(ctx, ids)
		if err != nil {
			return err
		}
		clear(users)
		pipe := s.rdb.Pipeline()
		for i, r := range recs {
			if r == nil {
				continue
			}
			st.Keys++
			pipe.HSet(ctx, s.keyIndexKey(r.key.User), ids[i], newMark())
			users[r.key.User] = struct{}{}
		}
		for u := range users {
			pipe.ZAdd(ctx, s.directoryKey(), redis.Z{Member: u})
		}
		st.Users += len(users)
		_, err = pipe.Exec(ctx)
		return err
	})
	if err != nil {
		return st, fmt.Errorf("index keys: %w", err)
	}
	err = s.scanSet(ctx, s.usersKey(), func(batch []string) error {
		members := make([]redis.Z, len(batch))
		for i, u := range batch {
			members[i] = redis.Z{Member: u}
		}
		st.Users += len(batch)
		return s.rdb.ZAdd(ctx, s.directoryKey(), members...).Err()
	})
	if err != nil {
		return st, fmt.Errorf("index connected users: %w", err)
	}
	if err := s.rdb.Set(ctx, s.indexedKey(), "1", 0).Err(); err != nil {
		return st, fmt.Errorf("write key index marker: %w", err)
	}
	return st, nil
}

// scanSet calls fn with the members of the set key, a batch at a time (SSCAN: a member may
// come twice, and members added or removed meanwhile may or may not come).
func (s *Store) scanSet(ctx context.Context, key string, fn func([]string) error) error {
	var cursor uint64
	for {
		members, next, err := s.rdb.SScan(ctx, key, cursor, "", indexBatch).Result()
		if err != nil {
			return err
		}
		if len(members) > 0 {
			if err := fn(members); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}
