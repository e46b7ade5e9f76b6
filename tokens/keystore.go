package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
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
// the same key twice fails with ErrKeyExists.
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
	created, err := s.rdb.HSetNX(ctx, s.apiKeyKey(k.ID), "rec", rec).Result()
	if err == nil && created {
		err = s.rdb.SAdd(ctx, s.apiKeysKey(), k.ID).Err()
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

// keyByID reads one key record; ErrNotFound if absent.
func (s *Store) keyByID(ctx context.Context, id string) (APIKey, error) {
	vals, err := s.rdb.HMGet(ctx, s.apiKeyKey(id), "rec", "used").Result()
	if err != nil {
		return APIKey{}, err
	}
	rec, _ := vals[0].(string)
	if rec == "" {
		return APIKey{}, fmt.Errorf("key %s: %w", id, ErrNotFound)
	}
	var sk storedKey
	if err := json.Unmarshal([]byte(rec), &sk); err != nil {
		return APIKey{}, fmt.Errorf("decode key %s: %w", id, err)
	}
	if used, _ := vals[1].(string); used != "" {
		ms, _ := strconv.ParseInt(used, 10, 64)
		sk.LastUsedAt = time.UnixMilli(ms).UTC()
	}
	k := sk.APIKey
	k.hash = sk.Hash
	return k, nil
}

// KeyByHash returns the record of the key whose HashKey is hash: ErrUnknownKey if none.
func (s *Store) KeyByHash(ctx context.Context, hash string) (APIKey, error) {
	k, err := s.keyByID(ctx, keyID(hash))
	if errors.Is(err, ErrNotFound) || (err == nil && k.hash != hash) {
		return APIKey{}, s.observe("get_key", ErrUnknownKey)
	}
	return k, s.observe("get_key", err)
}

// Keys lists the key records of user, or of every user when user is empty, oldest first.
func (s *Store) Keys(ctx context.Context, user string) ([]APIKey, error) {
	ids, err := s.rdb.SMembers(ctx, s.apiKeysKey()).Result()
	if err != nil {
		return nil, s.observe("list_keys", err)
	}
	out := make([]APIKey, 0, len(ids))
	for _, id := range ids {
		k, err := s.keyByID(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, s.observe("list_keys", err)
		}
		if user == "" || k.User == user {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b APIKey) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, s.observe("list_keys", nil)
}

// DeleteKey revokes the key with id and returns its record; ErrNotFound if there is none.
func (s *Store) DeleteKey(ctx context.Context, id string) (APIKey, error) {
	k, err := s.keyByID(ctx, id)
	if err != nil {
		return APIKey{}, s.observe("delete_key", err)
	}
	err = s.rdb.Del(ctx, s.apiKeyKey(id)).Err()
	if err == nil {
		err = s.rdb.SRem(ctx, s.apiKeysKey(), id).Err()
	}
	if err = s.observe("delete_key", err); err != nil {
		return APIKey{}, err
	}
	s.publish(ctx, "k:"+id)
	return k, nil
}

// touchScript records a last-use time only on a key that still exists (a revoked key must not
// come back as an empty record).
var touchScript = `if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'used', ARGV[1]) end return 1`

// TouchKeys records last-use times, one write per key, pipelined.
func (s *Store) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	pipe := s.rdb.Pipeline()
	for id, t := range used {
		pipe.Eval(ctx, touchScript, []string{s.apiKeyKey(id)}, t.UnixMilli())
	}
	_, err := pipe.Exec(ctx)
	return s.observe("touch_keys", err)
}
