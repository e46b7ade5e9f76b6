package tokens

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Paged listings (issue 10): each page costs O(the page), whatever the number of users.

// Page sizes of the paged listings.
const (
	// DefaultPageSize is the page size when the caller names none.
	DefaultPageSize = 100
	// MaxPageSize is the largest page a caller may ask for.
	MaxPageSize = 1000
)

// ErrBadCursor: a paging cursor that no listing of this kind returned.
var ErrBadCursor = errors.New("unknown paging cursor")

// StatusNotConnected is the status of a user that holds keys but has no connection.
const StatusNotConnected = "not_connected"

// encodeCursor makes an opaque cursor of a listing kind and its position.
func encodeCursor(kind string, parts ...string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + "\x00" + strings.Join(parts, "\x00")))
}

// decodeCursor returns the n parts of a cursor of kind; "" is the start (nil parts).
func decodeCursor(kind, cursor string, n int) ([]string, error) {
	if cursor == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	parts := strings.Split(string(b), "\x00")
	if err != nil || len(parts) != n+1 || parts[0] != kind {
		return nil, fmt.Errorf("cursor for %s: %w", kind, ErrBadCursor)
	}
	return parts[1:], nil
}

// keyPosition is a key's place in a listing: created time and id.
func keyPosition(k APIKey) []string {
	return []string{strconv.FormatInt(k.CreatedAt.UnixNano(), 10), k.ID}
}

// afterPosition reports whether k comes after the position pos (created ns, id).
func afterPosition(k APIKey, pos []string) bool {
	ns, _ := strconv.ParseInt(pos[0], 10, 64)
	return compareKeys(k, APIKey{CreatedAt: time.Unix(0, ns), ID: pos[1]}) > 0
}

// clampLimit returns limit within 1..MaxPageSize, DefaultPageSize for zero or less.
func clampLimit(limit int) int {
	if limit <= 0 {
		return DefaultPageSize
	}
	return min(limit, MaxPageSize)
}

// KeysPage returns up to limit keys after cursor and the cursor of the next page ("" after the
// last). With user, the keys are user's, oldest first, and the cost is O(user's keys); without,
// every user's keys, by user and then age, at O(the page and the users it spans).
func (s *Store) KeysPage(ctx context.Context, user, cursor string, limit int) ([]APIKey, string, error) {
	limit = clampLimit(limit)
	if user != "" {
		pos, err := decodeCursor("ku", cursor, 2)
		if err != nil {
			return nil, "", err
		}
		per, err := s.keysOf(ctx, []string{user})
		if err = s.observe("list_keys", err); err != nil {
			return nil, "", err
		}
		keys := per[0]
		start := 0
		if pos != nil {
			start = len(keys)
			for i, k := range keys {
				if afterPosition(k, pos) {
					start = i
					break
				}
			}
		}
		end := min(start+limit, len(keys))
		page := append([]APIKey{}, keys[start:end]...)
		if end < len(keys) {
			return page, encodeCursor("ku", keyPosition(keys[end-1])...), nil
		}
		return page, "", nil
	}

	pos, err := decodeCursor("ka", cursor, 3)
	if err != nil {
		return nil, "", err
	}
	from := "-"
	if pos != nil {
		from = "[" + pos[0]
	}
	out := []APIKey{}
	for {
		users, err := s.rdb.ZRangeByLex(ctx, s.directoryKey(), &redis.ZRangeBy{Min: from, Max: "+", Count: int64(limit)}).Result()
		if err == nil && len(users) == 0 {
			return out, "", s.observe("list_keys", nil)
		}
		var per [][]APIKey
		if err == nil {
			per, err = s.keysOf(ctx, users)
		}
		if err = s.observe("list_keys", err); err != nil {
			return nil, "", err
		}
		for i, u := range users {
			for j, k := range per[i] {
				if pos != nil && u == pos[0] && !afterPosition(k, pos[1:]) {
					continue
				}
				out = append(out, k)
				if len(out) == limit {
					more := j < len(per[i])-1 || i < len(users)-1 || len(users) == limit
					if !more {
						return out, "", nil
					}
					return out, encodeCursor("ka", append([]string{u}, keyPosition(k)...)...), nil
				}
			}
		}
		if len(users) < limit {
			return out, "", nil
		}
		from = "(" + users[len(users)-1]
	}
}

// UserSummary is one user in the directory: what the operator needs during a migration.
type UserSummary struct {
	User string `json:"user"`
	// Status is StatusActive, StatusReauthRequired or StatusNotConnected.
	Status string `json:"status"`
	// Keys is the number of the user's API keys.
	Keys int `json:"keys"`
	// LastUsedAt is the latest last use of any of the user's keys; zero: never used.
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// UsersPage returns up to limit users that hold a key or a connection, in user order, after
// cursor, and the cursor of the next page ("" after the last). It costs O(the page's users and
// their keys).
func (s *Store) UsersPage(ctx context.Context, cursor string, limit int) ([]UserSummary, string, error) {
	limit = clampLimit(limit)
	pos, err := decodeCursor("us", cursor, 1)
	if err != nil {
		return nil, "", err
	}
	from := "-"
	if pos != nil {
		from = "(" + pos[0]
	}
	if err := s.ensureIndexed(ctx); err != nil {
		return nil, "", s.observe("list_users", err)
	}
	out := []UserSummary{}
	for len(out) < limit {
		want := limit - len(out)
		users, err := s.rdb.ZRangeByLex(ctx, s.directoryKey(), &redis.ZRangeBy{Min: from, Max: "+", Count: int64(want)}).Result()
		var sums []UserSummary
		if err == nil && len(users) > 0 {
			sums, err = s.summaries(ctx, users)
		}
		if err = s.observe("list_users", err); err != nil {
			return nil, "", err
		}
		for _, u := range sums {
			if u.Keys > 0 || u.Status != StatusNotConnected {
				out = append(out, u)
			}
		}
		if len(users) < want {
			return out, "", nil
		}
		from = "(" + users[len(users)-1]
	}
	return out, encodeCursor("us", out[len(out)-1].User), nil
}

// summaries reads the status, key count and last use of each of users.
func (s *Store) summaries(ctx context.Context, users []string) ([]UserSummary, error) {
	pipe := s.rdb.Pipeline()
	recs := make([]*redis.StringCmd, len(users))
	for i, u := range users {
		recs[i] = pipe.HGet(ctx, s.connKey(u), "rec")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read connections: %w", err)
	}
	keys, err := s.keysOf(ctx, users)
	if err != nil {
		return nil, err
	}
	out := make([]UserSummary, len(users))
	for i, u := range users {
		out[i] = UserSummary{User: u, Status: connStatus(recs[i].Val()), Keys: len(keys[i])}
		for _, k := range keys[i] {
			if k.LastUsedAt.After(out[i].LastUsedAt) {
				out[i].LastUsedAt = k.LastUsedAt
			}
		}
	}
	return out, nil
}

// connStatus reads the status of a stored connection record without opening its tokens: a
// record that does not decode cannot serve and so needs a new link like reauth_required.
func connStatus(rec string) string {
	if rec == "" {
		return StatusNotConnected
	}
	var c struct {
		Status string `json:"status"`
	}
	if json.Unmarshal([]byte(rec), &c) == nil && c.Status == StatusActive {
		return StatusActive
	}
	return StatusReauthRequired
}

// ConnectionsPage returns up to limit connections in user order after cursor, and the cursor
// of the next page ("" after the last; a page may hold fewer than limit when the directory
// holds users without a connection). Records that fail to decrypt are listed with status
// "undecryptable" only.
func (s *Store) ConnectionsPage(ctx context.Context, cursor string, limit int) ([]Connection, string, error) {
	limit = clampLimit(limit)
	pos, err := decodeCursor("cn", cursor, 1)
	if err != nil {
		return nil, "", err
	}
	from := "-"
	if pos != nil {
		from = "(" + pos[0]
	}
	err = s.ensureIndexed(ctx)
	var users []string
	if err == nil {
		users, err = s.rdb.ZRangeByLex(ctx, s.directoryKey(), &redis.ZRangeBy{Min: from, Max: "+", Count: int64(limit)}).Result()
	}
	var conns []Connection
	if err == nil {
		conns, err = s.readConnections(ctx, users)
	}
	if err = s.observe("list_connections", err); err != nil {
		return nil, "", err
	}
	if len(users) < limit {
		return conns, "", nil
	}
	return conns, encodeCursor("cn", users[len(users)-1]), nil
}

// readConnections reads the connections of users in one pipelined round trip, skipping users
// without one.
func (s *Store) readConnections(ctx context.Context, users []string) ([]Connection, error) {
	out := []Connection{}
	if len(users) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(users))
	for i, u := range users {
		cmds[i] = pipe.HMGet(ctx, s.connKey(u), "ver", "rec")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read connections: %w", err)
	}
	for i, u := range users {
		vals := cmds[i].Val()
		if field(vals, 1) == "" {
			continue
		}
		c, err := s.decodeConn(u, field(vals, 0), field(vals, 1))
		if err != nil {
			c = Connection{User: u, Status: StatusUndecryptable}
		}
		out = append(out, c)
	}
	return out, nil
}

// EachConnections calls fn with every stored connection, a bounded batch at a time, walking the
// set of connected users with SSCAN: memory stays flat however many users there are. A user
// may come twice when the set is resized during the walk. Records that fail to decrypt come
// with status "undecryptable" only.
func (s *Store) EachConnections(ctx context.Context, fn func([]Connection) error) error {
	err := s.scanSet(ctx, s.usersKey(), func(users []string) error {
		slices.Sort(users)
		conns, err := s.readConnections(ctx, users)
		if err != nil {
			return err
		}
		return fn(conns)
	})
	return s.observe("scan_connections", err)
}

func unixMilliUTC(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
