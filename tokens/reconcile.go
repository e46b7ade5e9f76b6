package tokens

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// reconcile repairs, from a batch of the records (the background round walks them all a batch
// at a time), what is kept beside them without a cross-slot transaction: the status sets behind
// the connections gauge and the identity index. Status-set members without a record are found
// once per round by Store.reconcileStatusOrphans.
func (mg *Manager) reconcile(ctx context.Context, conns []Connection) {
	if err := mg.store.reconcileStatus(ctx, conns); err != nil {
		mg.log.Warn("reconcile connection counts", zap.Error(err))
	}
	if err := mg.store.reconcileIdentities(ctx, conns); err != nil {
		mg.log.Warn("reconcile identity index", zap.Error(err))
	}
}

// reconcileIdentities points every Academy id held by an active connection of the batch at its
// holder (the most recently updated one of the batch, should two records claim it) when the
// index is missing or names a user whose record does not hold it. A named user outside the batch
// is read (rare: only when the index names another user than the batch's holder).
func (s *Store) reconcileIdentities(ctx context.Context, conns []Connection) error {
	holder := map[string]Connection{}
	byUser := make(map[string]Connection, len(conns))
	for _, c := range conns {
		byUser[c.User] = c
		if c.Status != StatusActive || c.AcademyID == "" {
			continue
		}
		if h, ok := holder[c.AcademyID]; !ok || c.UpdatedAt.After(h.UpdatedAt) {
			holder[c.AcademyID] = c
		}
	}
	if len(holder) == 0 {
		return nil
	}
	ids := make([]string, 0, len(holder))
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, 0, len(holder))
	for id := range holder {
		ids = append(ids, id)
		cmds = append(cmds, pipe.Get(ctx, s.identityKey(id)))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return s.observe("reconcile_identity", err)
	}
	for i, id := range ids {
		named := cmds[i].Val()
		c, ok := byUser[named]
		if !ok && named != "" {
			read, err := s.Connection(ctx, named)
			if err != nil && !errorsIsAny(err, ErrNotConnected, ErrDecrypt) {
				return err
			}
			c, ok = read, err == nil
		}
		if ok && c.AcademyID == id && c.Status == StatusActive {
			continue
		}
		// Only if nobody re-pinned it since the GET: a new consent is newer than this listing.
		if err := repinScript.Run(ctx, s.rdb, []string{s.identityKey(id)}, named, holder[id].User).Err(); err != nil {
			return s.observe("reconcile_identity", err)
		}
	}
	return s.observe("reconcile_identity", nil)
}

// repinScript sets the index entry to ARGV[2] only while it still holds ARGV[1] ("": absent).
var repinScript = redis.NewScript(`
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1`)
