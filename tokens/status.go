package tokens

import (
	"context"
	"errors"
	"fmt"

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

// reconcileStatus checks the status sets against a batch of records (the background round
// walks every record a batch at a time): a user filed wrongly is re-read and filed by its record
// as it is now, so a write that raced the listing wins. Members whose record is gone are found
// by reconcileStatusOrphans.
func (s *Store) reconcileStatus(ctx context.Context, conns []Connection) error {
	if len(conns) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([][]*redis.BoolCmd, len(conns))
	for i, c := range conns {
		for _, st := range Statuses {
			cmds[i] = append(cmds[i], pipe.SIsMember(ctx, s.statusKey(st), c.User))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("reconcile status counts: %w", s.observe("reconcile_status", err))
	}
	var suspects []string
	for i, c := range conns {
		for j, st := range Statuses {
			if cmds[i][j].Val() != (c.Status == st) {
				suspects = append(suspects, c.User)
				break
			}
		}
	}
	s.refile(ctx, suspects)
	return nil
}

// reconcileStatusOrphans walks each status set (SSCAN, in batches) and re-files the members
// whose record is gone or has another status.
func (s *Store) reconcileStatusOrphans(ctx context.Context) error {
	for _, st := range Statuses {
		err := s.scanSet(ctx, s.statusKey(st), func(members []string) error {
			pipe := s.rdb.Pipeline()
			recs := make([]*redis.StringCmd, len(members))
			for i, u := range members {
				recs[i] = pipe.HGet(ctx, s.connKey(u), "rec")
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			var suspects []string
			for i, u := range members {
				if connStatus(recs[i].Val()) != st {
					suspects = append(suspects, u)
				}
			}
			s.refile(ctx, suspects)
			return nil
		})
		if err != nil {
			return fmt.Errorf("reconcile status counts: %w", s.observe("reconcile_status_sets", err))
		}
	}
	return s.observe("reconcile_status_sets", nil) // counted: the end of a round shows in the metrics
}

// refile re-reads each user's record and files the user by it.
func (s *Store) refile(ctx context.Context, users []string) {
	for _, u := range users {
		c, err := s.Connection(ctx, u)
		switch {
		case err == nil:
			s.noteStatus(ctx, u, c.Status)
		case errorsIsAny(err, ErrNotConnected, ErrDecrypt):
			s.noteStatus(ctx, u, "")
		}
	}
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
