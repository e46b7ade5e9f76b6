package tokens

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/metrics"
)

// Store keeps connections, API keys, onboarding tickets and refresh leases in Redis.
//
// Layout under the configured prefix P (every key of one user shares the hash tag {u:USER}, so
// the Lua scripts below touch one Cluster slot):
//
//	P{u:USER}:conn   hash  ver (int), rec (JSON with the sealed tokens), refreshing (a
//	                 RefreshMarker: "OWNER UNIXMS VER", only while a refresh is in flight)
//	P{u:USER}:lock   string  refresh lease owner token, with a TTL
//	Pusers           set   users with a connection (for listing)
//	Pkey:ID          hash  rec (JSON of APIKey with the key's hash), used (unix ms of last use)
//	Pkeys            set   key ids
//	P{u:USER}:keys, Pdirectory, Pkeyindex: the per-user key index (see keyindex.go)
//	Pticket:HASH     string  onboarding ticket (JSON), TTL 10 min
//	Pstate:STATE     string  hash of the ticket an OAuth2 state belongs to, TTL 10 min
//	Pstatus:STATUS   set   users by connection status (status.go)
//	Pidentity:ID     string  the user connected as Academy account ID, a hint (identity.go)
type Store struct {
	rdb     redis.UniversalClient
	prefix  string
	keyring *Keyring
	m       *metrics.Metrics
	now     Clock
	indexed atomic.Bool // the records written before the key index are indexed (keyindex.go)
	indexMu sync.Mutex  // one first-use indexing at a time in this process
}

// NewStore returns a store over rdb. prefix namespaces every Redis key; now is the clock
// (nil: time.Now).
func NewStore(rdb redis.UniversalClient, prefix string, kr *Keyring, m *metrics.Metrics, now Clock) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{rdb: rdb, prefix: prefix, keyring: kr, m: m, now: now}
}

var validUser = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,128}$`)

// ValidUser reports whether u can name a user: 1–128 letters, digits or ._@+- (no braces, so a
// user can never break out of its Redis Cluster hash tag).
func ValidUser(u string) bool { return validUser.MatchString(u) }

func (s *Store) connKey(user string) string { return s.prefix + "{u:" + user + "}:conn" }
func (s *Store) lockKey(user string) string { return s.prefix + "{u:" + user + "}:lock" }
func (s *Store) usersKey() string           { return s.prefix + "users" }
func (s *Store) apiKeyKey(id string) string { return s.prefix + "key:" + id }
func (s *Store) apiKeysKey() string         { return s.prefix + "keys" }

// observe counts one store operation and translates transport errors to a *StoreError
// (ErrStoreUnavailable), keeping the cause in the chain.
func (s *Store) observe(op string, err error) error {
	result := "ok"
	if err != nil && !isAnswer(err) {
		result = "error"
		err = &StoreError{Op: op, Err: err}
	}
	s.m.StoreOperations.WithLabelValues(op, result).Inc()
	return err
}

// isAnswer reports whether err is Redis's answer (nothing there, refused) rather than a failure
// to reach it.
func isAnswer(err error) bool {
	for _, answer := range []error{redis.Nil, ErrNotFound, ErrNotConnected, ErrDecrypt, ErrUnknownKey, ErrKeyExists, ErrMalformedKey, ErrTicketInvalid, ErrTicketUsed} {
		if errors.Is(err, answer) {
			return true
		}
	}
	return false
}

// storedConn is the Redis form of a Connection: the tokens sealed, the rest readable.
type storedConn struct {
	Connection
	Sealed []byte `json:"sealed"`
}

type sealedTokens struct {
	Access  string `json:"a"`
	Refresh string `json:"r"`
}

func (s *Store) encodeConn(c Connection) (string, error) {
	pt, err := json.Marshal(sealedTokens{c.AccessToken, c.RefreshToken})
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(storedConn{Connection: c, Sealed: s.keyring.Seal(pt, []byte(c.User))})
	return string(b), err
}

// decodeConn turns the fields of a connection hash into a Connection. Every failure matches
// ErrDecrypt: a record that does not decode or open is corrupt, whatever the reason.
func (s *Store) decodeConn(user, ver, rec string) (Connection, error) {
	var sc storedConn
	if err := json.Unmarshal([]byte(rec), &sc); err != nil {
		return Connection{}, fmt.Errorf("decode connection of %s: %w: %w", user, ErrDecrypt, err)
	}
	// The user id is the associated data: a record copied under another user fails here.
	pt, _, err := s.keyring.Open(sc.Sealed, []byte(user))
	if err != nil {
		return Connection{}, fmt.Errorf("open connection of %s: %w", user, err)
	}
	var t sealedTokens
	if err := json.Unmarshal(pt, &t); err != nil { // the cause could quote token bytes: dropped
		return Connection{}, fmt.Errorf("decode tokens of %s: %w", user, ErrDecrypt)
	}
	c := sc.Connection
	c.User, c.AccessToken, c.RefreshToken = user, t.Access, t.Refresh
	if c.Version, err = strconv.ParseInt(ver, 10, 64); err != nil || c.Version <= 0 {
		return Connection{}, fmt.Errorf("decode version %q of %s: %w", ver, user, ErrDecrypt)
	}
	return c, nil
}

// parseMarker reads the "OWNER UNIXMS VERSION" form of a RefreshMarker and the record version
// it was set on; anything else is no marker.
func parseMarker(v string) (*RefreshMarker, int64) {
	f := strings.Fields(v)
	if len(f) != 3 {
		return nil, 0
	}
	ms, err1 := strconv.ParseInt(f[1], 10, 64)
	ver, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, 0
	}
	return &RefreshMarker{Owner: f[0], Since: time.UnixMilli(ms).UTC()}, ver
}

// field returns HMGET value i as a string ("" when absent).
func field(vals []any, i int) string {
	if i >= len(vals) {
		return ""
	}
	v, _ := vals[i].(string)
	return v
}

// Connection reads the user's connection: ErrNotConnected if there is none.
func (s *Store) Connection(ctx context.Context, user string) (Connection, error) {
	vals, err := s.rdb.HMGet(ctx, s.connKey(user), "ver", "rec").Result()
	if err != nil {
		return Connection{}, s.observe("get_connection", err)
	}
	if field(vals, 1) == "" {
		return Connection{}, s.observe("get_connection", ErrNotConnected)
	}
	c, err := s.decodeConn(user, field(vals, 0), field(vals, 1))
	return c, s.observe("get_connection", err)
}

// RefreshState reads the user's connection and the refresh marker on it (nil: none), as a
// Refresher needs under the lease: ErrNotConnected if there is none.
func (s *Store) RefreshState(ctx context.Context, user string) (Connection, *RefreshMarker, error) {
	vals, err := s.rdb.HMGet(ctx, s.connKey(user), "ver", "rec", "refreshing").Result()
	if err != nil {
		return Connection{}, nil, s.observe("get_connection", err)
	}
	if field(vals, 1) == "" {
		return Connection{}, nil, s.observe("get_connection", ErrNotConnected)
	}
	c, err := s.decodeConn(user, field(vals, 0), field(vals, 1))
	if err != nil {
		return Connection{}, nil, s.observe("get_connection", err)
	}
	// A marker set on another version is stale: a writer that does not know markers (an older
	// gateway during a rolling upgrade) replaced the record without clearing it.
	m, ver := parseMarker(field(vals, 2))
	if m == nil || ver != c.Version {
		m = nil
	}
	return c, m, s.observe("get_connection", nil)
}

// casScript writes rec when the stored version equals ARGV[1] ("0": absent) and returns the new
// version, or -1 when another writer came first. A new record ends any refresh in flight.
var casScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'ver') or '0'
if v ~= ARGV[1] then return -1 end
local n = tonumber(v) + 1
redis.call('HSET', KEYS[1], 'ver', n, 'rec', ARGV[2])
redis.call('HDEL', KEYS[1], 'refreshing')
return n`)

// putScript writes rec unconditionally and returns the new version.
var putScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('HSET', KEYS[1], 'rec', ARGV[1])
redis.call('HDEL', KEYS[1], 'refreshing')
return n`)

// CompareAndSwap writes c if the stored version is still expected. It reports false (and no
// error) when another writer came first: a slower refresher never overwrites a newer token.
func (s *Store) CompareAndSwap(ctx context.Context, c Connection, expected int64) (Connection, bool, error) {
	rec, err := s.encodeConn(c)
	if err != nil {
		return Connection{}, false, fmt.Errorf("encode connection of %s: %w", c.User, err)
	}
	n, err := casScript.Run(ctx, s.rdb, []string{s.connKey(c.User)}, expected, rec).Int64()
	if err = s.observe("cas_connection", err); err != nil || n < 0 {
		return Connection{}, false, err
	}
	s.noteStatus(ctx, c.User, c.Status)
	if c.Status != StatusActive {
		s.publish(ctx, "u:"+c.User)
	}
	c.Version = n
	return c, true, nil
}

// PutConnection stores c whatever is stored now: a new authorization replaces the earlier one.
func (s *Store) PutConnection(ctx context.Context, c Connection) (Connection, error) {
	rec, err := s.encodeConn(c)
	if err != nil {
		return Connection{}, fmt.Errorf("encode connection of %s: %w", c.User, err)
	}
	n, err := putScript.Run(ctx, s.rdb, []string{s.connKey(c.User)}, rec).Int64()
	if err == nil {
		err = s.rdb.SAdd(ctx, s.usersKey(), c.User).Err()
	}
	if err == nil {
		err = s.addToDirectory(ctx, c.User)
	}
	if err = s.observe("put_connection", err); err != nil {
		return Connection{}, err
	}
	s.noteStatus(ctx, c.User, c.Status)
	s.publish(ctx, "u:"+c.User)
	c.Version = n
	return c, nil
}

// DeleteConnection removes the user's connection; deleting a missing one is not an error.
func (s *Store) DeleteConnection(ctx context.Context, user string) error {
	err := s.rdb.Del(ctx, s.connKey(user)).Err()
	if err == nil {
		err = s.rdb.SRem(ctx, s.usersKey(), user).Err()
	}
	if err = s.observe("delete_connection", err); err != nil {
		return err
	}
	s.noteStatus(ctx, user, "")
	s.publish(ctx, "u:"+user)
	return nil
}

// Connections lists every stored connection, ordered by user, reading them in pipelined
// batches. Records that fail to decrypt are listed with status "undecryptable" only.
func (s *Store) Connections(ctx context.Context) ([]Connection, error) {
	users, err := s.rdb.SMembers(ctx, s.usersKey()).Result()
	if err != nil {
		return nil, s.observe("list_connections", err)
	}
	slices.Sort(users)
	out := make([]Connection, 0, len(users))
	for batch := range slices.Chunk(users, indexBatch) {
		conns, err := s.readConnections(ctx, batch) // skips users deleted since SMEMBERS
		if err != nil {
			return nil, s.observe("list_connections", err)
		}
		out = append(out, conns...)
	}
	return out, s.observe("list_connections", nil)
}

// Lease is a held refresh lock. Its owner token makes renew and release safe: a replica can
// never extend or drop a lease that expired and was taken by another.
type Lease struct {
	// User whose connection the lease covers.
	User string
	// Owner is the random token stored in the lock: whoever holds it holds the lease.
	Owner string
}

// AcquireLease tries to take the user's refresh lease for ttl; ok is false when another holds it.
func (s *Store) AcquireLease(ctx context.Context, user string, ttl time.Duration) (lease Lease, ok bool, err error) {
	owner := randomHex(16)
	ok, err = s.rdb.SetNX(ctx, s.lockKey(user), owner, ttl).Result()
	if err = s.observe("acquire_lease", err); err != nil || !ok {
		return Lease{}, false, err
	}
	return Lease{User: user, Owner: owner}, true, nil
}

var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// RenewLease extends a held lease; it reports false when the lease was lost.
func (s *Store) RenewLease(ctx context.Context, l Lease, ttl time.Duration) (bool, error) {
	n, err := renewScript.Run(ctx, s.rdb, []string{s.lockKey(l.User)}, l.Owner, ttl.Milliseconds()).Int64()
	return n == 1, s.observe("renew_lease", err)
}

// ReleaseLease drops a held lease if it is still ours.
func (s *Store) ReleaseLease(ctx context.Context, l Lease) error {
	return s.observe("release_lease", releaseScript.Run(ctx, s.rdb, []string{s.lockKey(l.User)}, l.Owner).Err())
}

// markScript sets the refresh marker ARGV[3] on the connection KEYS[1] if the lease KEYS[2] is
// still owned by ARGV[1] and the record is still at version ARGV[2]: one atomic check, so a
// holder whose lease expired never starts a refresh.
var markScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if (redis.call('HGET', KEYS[1], 'ver') or '0') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'refreshing', ARGV[3])
return 1`)

// clearScript removes the refresh marker of KEYS[1] if owner ARGV[1] set it.
var clearScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'refreshing')
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then return redis.call('HDEL', KEYS[1], 'refreshing') end
return 0`)

// MarkRefreshing records that the holder of l is about to spend the refresh token of the
// connection at version (see RefreshMarker). It reports false, and records nothing, when the
// lease is no longer l's or the record changed since it was read.
func (s *Store) MarkRefreshing(ctx context.Context, l Lease, version int64) (bool, error) {
	marker := l.Owner + " " + strconv.FormatInt(s.now().UnixMilli(), 10) + " " + strconv.FormatInt(version, 10)
	n, err := markScript.Run(ctx, s.rdb, []string{s.connKey(l.User), s.lockKey(l.User)}, l.Owner, version, marker).Int64()
	return n == 1, s.observe("mark_refreshing", err)
}

// ClearRefreshing removes the marker that the holder of l set, once it knows that the refresh
// token was not spent; a marker of another holder is left alone.
func (s *Store) ClearRefreshing(ctx context.Context, l Lease) error {
	return s.observe("clear_refreshing", clearScript.Run(ctx, s.rdb, []string{s.connKey(l.User)}, l.Owner).Err())
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.observe("ping", s.rdb.Ping(ctx).Err())
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("read random: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}
