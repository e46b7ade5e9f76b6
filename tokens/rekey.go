package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

// RekeyReport is what Store.Rekey found (or, in a dry run, would do).
type RekeyReport struct {
	// Reencrypted counts records sealed with an older key and now sealed with the first one.
	Reencrypted int `json:"reencrypted"`
	// Current counts records already sealed with the first key.
	Current int `json:"current"`
	// Unreadable lists the users whose records no configured key opens (or that do not
	// decode); they are left untouched.
	Unreadable []string `json:"unreadable"`
}

// rekeyScript replaces the record only while both its version and its bytes are those read, and
// leaves the version as it is: the tokens are the same, so a refresher that read this version
// still wins its compare-and-set afterwards and never loses a rotated refresh token to a rekey.
var rekeyScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'ver') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'rec') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'rec', ARGV[3])
return 1`)

// Rekey re-seals every stored connection with the first encryption key. It is safe while
// replicas serve: each write is a compare-and-set on the record read, and a record that
// changed meanwhile is read again (whoever wrote it sealed it with their first key). With
// dryRun nothing is written.
func (s *Store) Rekey(ctx context.Context, dryRun bool) (RekeyReport, error) {
	users, err := s.rdb.SMembers(ctx, s.usersKey()).Result()
	if err != nil {
		return RekeyReport{}, fmt.Errorf("rekey: %w", s.observe("rekey", err))
	}
	slices.Sort(users)
	rep := RekeyReport{Unreadable: []string{}}
	for _, u := range users {
		outcome, err := s.rekeyOne(ctx, u, dryRun)
		if err != nil {
			return rep, fmt.Errorf("rekey %s: %w", u, err)
		}
		switch outcome {
		case rekeyed:
			rep.Reencrypted++
		case current:
			rep.Current++
		case unreadable:
			rep.Unreadable = append(rep.Unreadable, u)
		}
	}
	return rep, nil
}

type rekeyOutcome int

const (
	gone rekeyOutcome = iota // deleted since listed
	rekeyed
	current
	unreadable
)

func (s *Store) rekeyOne(ctx context.Context, user string, dryRun bool) (rekeyOutcome, error) {
	for range 5 {
		vals, err := s.rdb.HMGet(ctx, s.connKey(user), "ver", "rec").Result()
		if err != nil {
			return 0, s.observe("rekey", err)
		}
		ver, _ := vals[0].(string)
		rec, _ := vals[1].(string)
		if rec == "" {
			return gone, nil
		}
		// Only the sealed field changes; every other field is kept byte for byte.
		var fields map[string]json.RawMessage
		var sealed []byte
		if json.Unmarshal([]byte(rec), &fields) != nil || json.Unmarshal(fields["sealed"], &sealed) != nil {
			return unreadable, nil
		}
		pt, stale, err := s.keyring.Open(sealed, []byte(user))
		if errors.Is(err, ErrDecrypt) {
			return unreadable, nil
		}
		if err != nil {
			return 0, err
		}
		if !stale {
			return current, nil
		}
		if dryRun {
			return rekeyed, nil
		}
		fields["sealed"], _ = json.Marshal(s.keyring.Seal(pt, []byte(user)))
		next, err := json.Marshal(fields)
		if err != nil {
			return 0, fmt.Errorf("encode: %w", err)
		}
		n, err := rekeyScript.Run(ctx, s.rdb, []string{s.connKey(user)}, ver, rec, string(next)).Int64()
		if err = s.observe("rekey", err); err != nil {
			return 0, err
		}
		if n == 1 {
			return rekeyed, nil
		}
		// Written meanwhile (a refresh, a new authorization): look again.
	}
	return 0, errors.New("the record kept changing")
}
