package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrKeyExists: the key (or one with the same hash) is already registered.
var ErrKeyExists = errors.New("API key already registered")

// storedKey is the Redis form of an APIKey: the record plus the hash it must match.
type storedKey struct {
	APIKey
	Hash string `json:"hash"`
}

// ErrMalformedKey: a key given for registration is not one KeyRule allows.
var ErrMalformedKey = errors.New("malformed API key")

// IssueKey creates a new key for user, or registers existing (a legacy v1 key, so its caller
// changes nothing) when it is not empty. It returns the record and the key, which is shown once.
func (s *Store) IssueKey(ctx context.Context, user string, scopes []string, name, existing string) (APIKey, string, error) {
	if !ValidUser(user) {
		return APIKey{}, "", fmt.Errorf("issue key: user %q: user ids are 1-128 letters, digits or ._@+-", user)
	}
	key := existing
	if key == "" {
		key = NewAPIKey()
	} else if !WellFormed(key) {
		return APIKey{}, "", fmt.Errorf("issue key for %s: %w: %s", user, ErrMalformedKey, KeyRule)
	}
	k, err := s.CreateKey(ctx, key, APIKey{User: user, Scopes: scopes, Name: name})
	if err != nil {
		return APIKey{}, "", fmt.Errorf("issue key for %s: %w", user, err)
	}
	return k, key, nil
}

// CreateKey registers key for k.User and returns the stored record with its id. Registering
// the same key twice fails with ErrKeyExists. The key enters k.User's index before and after
// its record is written (see keyindex.go).
func (s *Store) CreateKey(ctx context.Context, key string, k APIKey) (APIKey, error) {
	hash := HashKey(key)
	k.ID, k.hash = keyID(hash), hash
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.now().UTC()
	}
	rec, err := json.Marshal(storedKey{APIKey: k, Hash: hash})
	if err != nil {
		return APIKey{}, fmt.Errorf("encode key %s: %w", k.ID, err)
	}
	gen, err := s.markIndexed(ctx, k.User, k.ID)
	var created bool
	if err == nil {
		created, err = s.rdb.HSetNX(ctx, s.apiKeyKey(k.ID), "rec", rec).Result()
	}
	if err == nil && created {
		err = s.rdb.SAdd(ctx, s.apiKeysKey(), k.ID).Err()
		if err == nil {
			_, err = s.markIndexed(ctx, k.User, k.ID)
		}
	}
	if err == nil && !created {
		// Taken: drop our index entry unless the record is this user's own.
		var owner APIKey
		if owner, err = s.keyByID(ctx, k.ID); err == nil && owner.User != k.User {
			err = s.unindex(ctx, []staleEntry{{k.User, indexEntry{k.ID, gen}}})
		} else if errors.Is(err, ErrNotFound) {
			err = nil // revoked meanwhile; the entry is filtered and repaired by readers
		}
	}
	if err = s.observe("put_key", err); err != nil {
		return APIKey{}, err
	}
	if !created {
		return APIKey{}, fmt.Errorf("create key %s: %w", k.ID, ErrKeyExists)
	}
	s.publish(ctx, "k:"+k.ID) // replicas that cached the key as unknown learn of it now
	return k, nil
}

// markIndexed gives id a new mark in user's index (adding it) and enters user in the
// directory, in one round trip; it returns the mark.
func (s *Store) markIndexed(ctx context.Context, user, id string) (string, error) {
	pipe := s.rdb.Pipeline()
	mark := newMark()
	pipe.HSet(ctx, s.keyIndexKey(user), id, mark)
	pipe.ZAdd(ctx, s.directoryKey(), redis.Z{Member: user})
	if _, err := pipe.Exec(ctx); err != nil {
		return "", fmt.Errorf("index key %s: %w", id, err)
	}
	return mark, nil
}

// addToDirectory enters user in the directory of users (keyindex.go).
func (s *Store) addToDirectory(ctx context.Context, user string) error {
	return s.rdb.ZAdd(ctx, s.directoryKey(), redis.Z{Member: user}).Err()
}

// keyByID reads one key record; ErrNotFound if absent.
func (s *Store) keyByID(ctx context.Context, id string) (APIKey, error) {
	vals, err := s.rdb.HMGet(ctx, s.apiKeyKey(id), "rec", "used").Result()
	if err != nil {
		return APIKey{}, err
	}
	r, err := decodeRecord(id, vals)
	if err != nil {
		return APIKey{}, err
	}
	if r == nil {
		return APIKey{}, fmt.Errorf("key %s: %w", id, ErrNotFound)
	}
	return r.apiKey(), nil
}

// KeyByHash returns the record of the key whose HashKey is hash: ErrUnknownKey if none.
func (s *Store) KeyByHash(ctx context.Context, hash string) (APIKey, error) {
	k, err := s.keyByID(ctx, keyID(hash))
	if errors.Is(err, ErrNotFound) || (err == nil && k.hash != hash) {
		return APIKey{}, s.observe("get_key", ErrUnknownKey)
	}
	return k, s.observe("get_key", err)
}

// Keys lists the key records of user, oldest first, or of every user (ordered by user, then
// age) when user is empty. It reads only user's index and records: O(user's keys). Listing
// every key holds them all in memory; KeysPage does not.
func (s *Store) Keys(ctx context.Context, user string) ([]APIKey, error) {
	out := []APIKey{}
	for cursor := ""; ; {
		page, next, err := s.KeysPage(ctx, user, cursor, MaxPageSize)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}

// KeysChanged asks every replica to reload its key filter: for a write that registers many keys
// without CreateKey's message per key (a bulk import).
func (s *Store) KeysChanged(ctx context.Context) {
	s.publish(ctx, "k:"+allKeys)
}

// maxScanRounds bounds a KeyIDs scan: 10,000 SSCAN batches of ~1,000 ids.
const maxScanRounds = 10_000

// KeyIDs calls yield with the id of every registered key, read with SSCAN in batches so that a
// large set never blocks Redis. An id may be yielded twice.
func (s *Store) KeyIDs(ctx context.Context, yield func(id string)) error {
	var cursor uint64
	for range maxScanRounds {
		ids, next, err := s.rdb.SScan(ctx, s.apiKeysKey(), cursor, "", 1000).Result()
		if err != nil {
			return s.observe("scan_keys", err)
		}
		for _, id := range ids {
			yield(id)
		}
		if next == 0 {
			return s.observe("scan_keys", nil)
		}
		cursor = next
	}
	return s.observe("scan_keys", fmt.Errorf("scan key ids: more than %d batches", maxScanRounds))
}

// KeyCount returns how many keys are registered.
func (s *Store) KeyCount(ctx context.Context) (int64, error) {
	n, err := s.rdb.SCard(ctx, s.apiKeysKey()).Result()
	return n, s.observe("count_keys", err)
}

// DeleteKey revokes the key with id and returns its record; ErrNotFound if there is none.
func (s *Store) DeleteKey(ctx context.Context, id string) (APIKey, error) {
	k, err := s.keyByID(ctx, id)
	if err != nil {
		return APIKey{}, s.observe("delete_key", err)
	}
	deleted, err := s.deleteKeys(ctx, k.User, []indexEntry{{id: id}}, true)
	if err == nil && len(deleted) == 0 {
		err = fmt.Errorf("key %s: %w", id, ErrNotFound) // revoked meanwhile
	}
	if err = s.observe("delete_key", err); err != nil {
		return APIKey{}, err
	}
	return k, nil
}

// DeleteUserKeys revokes every key of user and returns their records: O(user's keys).
func (s *Store) DeleteUserKeys(ctx context.Context, user string) ([]APIKey, error) {
	err := s.ensureIndexed(ctx)
	var idx [][]indexEntry
	if err == nil {
		idx, err = s.userIndex(ctx, []string{user})
	}
	var deleted []APIKey
	if err == nil {
		deleted, err = s.deleteKeys(ctx, user, idx[0], false)
	}
	if err = s.observe("delete_user_keys", err); err != nil {
		return nil, err
	}
	slices.SortFunc(deleted, compareKeys)
	return deleted, nil
}

// deleteOwnScript deletes the key record KEYS[1] only if it belongs to user ARGV[1], and
// returns the record it deleted ("" if none).
const deleteOwnScript = `local r = redis.call('HGET', KEYS[1], 'rec')
if not r then return '' end
local ok, k = pcall(cjson.decode, r)
if not ok or k.user ~= ARGV[1] then return '' end
redis.call('DEL', KEYS[1])
return r`

// deleteKeys deletes the records of entries that belong to user, then their index entries (each
// only if its mark is unchanged, see keyindex.go), in pipelined batches. With readGen the marks
// are read first (entries from elsewhere); otherwise entries carry them.
func (s *Store) deleteKeys(ctx context.Context, user string, entries []indexEntry, readGen bool) ([]APIKey, error) {
	var deleted []APIKey
	for batch := range slices.Chunk(entries, indexBatch) {
		if readGen {
			gens, err := s.rdb.HMGet(ctx, s.keyIndexKey(user), ids(batch)...).Result()
			if err != nil {
				return nil, fmt.Errorf("read key index of %s: %w", user, err)
			}
			for i := range batch {
				batch[i].gen, _ = gens[i].(string)
			}
		}
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(batch))
		for i, e := range batch {
			cmds[i] = pipe.Eval(ctx, deleteOwnScript, []string{s.apiKeyKey(e.id)}, user)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("delete keys of %s: %w", user, err)
		}
		pipe = s.rdb.Pipeline()
		for i, e := range batch {
			rec, _ := cmds[i].Val().(string)
			if rec != "" {
				var sk storedKey
				if err := json.Unmarshal([]byte(rec), &sk); err == nil {
					deleted = append(deleted, sk.APIKey)
				}
				pipe.SRem(ctx, s.apiKeysKey(), e.id)
				pipe.Publish(ctx, s.invalidateChannel(), "k:"+e.id)
			}
			if e.gen != "" {
				pipe.Eval(ctx, unindexScript, []string{s.keyIndexKey(user)}, e.id, e.gen)
			}
		}
		if pipe.Len() == 0 {
			continue
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("unindex keys of %s: %w", user, err)
		}
	}
	return deleted, nil
}

func ids(entries []indexEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.id
	}
	return out
}

// touchScript records a last-use time only on a key that still exists (a revoked key must not
// come back as an empty record).
var touchScript = `if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'used', ARGV[1]) end return 1`

// TouchKeys records last-use times, one write per key, pipelined in bounded batches.
func (s *Store) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	var err error
	pipe := s.rdb.Pipeline()
	for id, t := range used {
		pipe.Eval(ctx, touchScript, []string{s.apiKeyKey(id)}, t.UnixMilli())
		if pipe.Len() == indexBatch {
			if _, err = pipe.Exec(ctx); err != nil {
				break
			}
		}
	}
	if err == nil && pipe.Len() > 0 {
		_, err = pipe.Exec(ctx)
	}
	return s.observe("touch_keys", err)
}
