package tokens

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// The identity index maps an Academy account to the gateway user connected with it:
//
//	Pidentity:ACADEMY_ID  string  user
//
// The Academy keeps one connection per Academy account, so when a consent for an account
// arrives, the gateway user that held it has lost its connection upstream and is marked
// reauth_required (reason replaced) at once.
//
// On Redis Cluster the index entry and the users' connection records live in different hash
// slots, so no transaction or script can change them together. The index is therefore only a
// hint, never the truth: every use re-reads the named user's connection and acts only when that
// record still carries the Academy id and is active (MarkReplaced is a compare-and-set on the
// record's version). Writes go record first, index second; a crash in between leaves the index
// missing or stale, which costs at most the immediate marking (the replaced user still becomes
// reauth_required when its next refresh is refused), and the background round repairs it from
// the records (Manager.reconcile). A stale entry pointing at the wrong user is harmless: the
// re-check refuses it.

func (s *Store) identityKey(academyID string) string { return s.prefix + "identity:" + academyID }

// PinIdentity records that user now holds the Academy account academyID and returns the user
// the index named before ("" if none).
func (s *Store) PinIdentity(ctx context.Context, academyID, user string) (previous string, err error) {
	previous, err = s.rdb.SetArgs(ctx, s.identityKey(academyID), user, redis.SetArgs{Get: true}).Result()
	if errors.Is(err, redis.Nil) {
		return "", s.observe("pin_identity", nil)
	}
	return previous, s.observe("pin_identity", err)
}

// IdentityHolder returns the user the index names for academyID ("" if none). It is a hint:
// check the user's record before acting on it.
func (s *Store) IdentityHolder(ctx context.Context, academyID string) (string, error) {
	u, err := s.rdb.Get(ctx, s.identityKey(academyID)).Result()
	if errors.Is(err, redis.Nil) {
		return "", s.observe("get_identity", nil)
	}
	return u, s.observe("get_identity", err)
}

// unpinScript deletes the index entry only while it still names ARGV[1].
var unpinScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// UnpinIdentity removes the index entry of academyID if it still names user (a revoked
// connection, or a user that moved to another Academy account).
func (s *Store) UnpinIdentity(ctx context.Context, academyID, user string) error {
	if academyID == "" {
		return nil
	}
	return s.observe("unpin_identity", unpinScript.Run(ctx, s.rdb, []string{s.identityKey(academyID)}, user).Err())
}

// MarkReplaced marks user's connection reauth_required when it is active and still connected
// as the Academy account academyID: another gateway user's consent for that account ended it at
// the Academy. It reports whether it marked it; every replica drops its cached copy at once.
func (s *Store) MarkReplaced(ctx context.Context, user, academyID string) (bool, error) {
	for range 3 { // a concurrent refresh may bump the version: re-read and re-check
		c, err := s.Connection(ctx, user)
		if errors.Is(err, ErrNotConnected) || errors.Is(err, ErrDecrypt) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("mark %s replaced: %w", user, err)
		}
		if c.AcademyID != academyID || c.Status != StatusActive {
			return false, nil
		}
		marked := c
		marked.Status, marked.UpdatedAt = StatusReauthRequired, s.now()
		if _, ok, err := s.CompareAndSwap(ctx, marked, c.Version); err != nil || ok {
			return ok, err
		}
	}
	return false, fmt.Errorf("mark %s replaced: the record kept changing", user)
}
