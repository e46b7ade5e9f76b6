package tokens

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

// Connection counts by status, for academy_gateway_connections without a scan of all users:
//
//	Pstatus:active           set  users whose connection is active
//	Pstatus:reauth_required  set  users whose connection needs re-authorization
//
// Every write of a connection moves its user between the sets after the record is written
// (SADD to one, SREM from the other: idempotent, so a retry or a later write mends a lost one),
// and a scrape reads both SCARDs. A set and a record are in different Cluster slots and cannot
// change in one step; the rare interleaving of two writers, or a crash between the two steps,
// is repaired by the background round (Manager.reconcile), which re-reads the records.

// Statuses lists the connection statuses the gauge reports.
var Statuses = []string{StatusActive, StatusReauthRequired}

func (s *Store) statusKey(status string) string { return s.prefix + "status:" + status }

// noteStatus files user under status ("" : under none, the connection was deleted).
func (s *Store) noteStatus(ctx context.Context, user, status string) {
	pipe := s.rdb.Pipeline()
	for _, st := range Statuses {
		if st == status {
			pipe.SAdd(ctx, s.statusKey(st), user)
		} else {
			pipe.SRem(ctx, s.statusKey(st), user)
		}
	}
	_, err := pipe.Exec(ctx)
	_ = s.observe("note_status", err) // counted; the background round mends what failed
}

// CountByStatus returns how many connections have each status (two SCARDs).
func (s *Store) CountByStatus(ctx context.Context) (map[string]int64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(Statuses))
	for i, st := range Statuses {
		cmds[i] = pipe.SCard(ctx, s.statusKey(st))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.observe("count_status", err)
	}
	out := make(map[string]int64, len(Statuses))
	for i, st := range Statuses {
		out[st] = cmds[i].Val()
	}
	return out, s.observe("count_status", nil)
}

// reconcileStatus makes the status sets agree with conns (a full listing): a user filed wrongly
// is re-read and filed by its record as it is now, so a write that raced the listing wins.
func (s *Store) reconcileStatus(ctx context.Context, conns []Connection) error {
	want := make(map[string]string, len(conns))
	for _, c := range conns {
		if slices.Contains(Statuses, c.Status) {
			want[c.User] = c.Status
		}
	}
	suspects := map[string]bool{}
	for _, st := range Statuses {
		members, err := s.rdb.SMembers(ctx, s.statusKey(st)).Result()
		if err != nil {
			return fmt.Errorf("reconcile status counts: %w", s.observe("reconcile_status", err))
		}
		in := make(map[string]bool, len(members))
		for _, u := range members {
			in[u] = true
			if want[u] != st {
				suspects[u] = true
			}
		}
		for u, w := range want {
			if w == st && !in[u] {
				suspects[u] = true
			}
		}
	}
	for u := range suspects {
		c, err := s.Connection(ctx, u)
		switch {
		case err == nil:
			s.noteStatus(ctx, u, c.Status)
		case errorsIsAny(err, ErrNotConnected, ErrDecrypt):
			s.noteStatus(ctx, u, "")
		}
	}
	return nil
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
