package tokens

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Onboarding ticket errors.
var (
	// ErrTicketInvalid: the ticket or state is unknown or expired.
	ErrTicketInvalid = errors.New("onboarding link is unknown or has expired")
	// ErrTicketUsed: the ticket was already used to connect.
	ErrTicketUsed = errors.New("onboarding link was already used")
)

func (s *Store) ticketKey(ticket string) string { return s.prefix + "ticket:" + HashKey(ticket) }
func (s *Store) stateKey(state string) string   { return s.prefix + "state:" + HashKey(state) }

// CreateTicket issues a single-use onboarding ticket for user, valid for ttl. Only its hash is
// stored.
func (s *Store) CreateTicket(ctx context.Context, user string, ttl time.Duration) (ticket string, expiresAt time.Time, err error) {
	ticket = randomToken()
	expiresAt = s.now().Add(ttl).UTC().Truncate(time.Second)
	err = s.rdb.HSet(ctx, s.ticketKey(ticket), "user", user, "used", 0).Err()
	if err == nil {
		err = s.rdb.PExpireAt(ctx, s.ticketKey(ticket), expiresAt).Err()
	}
	if err = s.observe("create_ticket", err); err != nil {
		return "", time.Time{}, err
	}
	return ticket, expiresAt, nil
}

// BindState checks that ticket is open and binds a new OAuth2 state to it, living as long as the
// ticket. It returns the state and the ticket's expiry.
func (s *Store) BindState(ctx context.Context, ticket string) (state string, expiresAt time.Time, err error) {
	tk := s.ticketKey(ticket)
	vals, err := s.rdb.HMGet(ctx, tk, "user", "used").Result()
	if err != nil {
		return "", time.Time{}, s.observe("bind_state", err)
	}
	if vals[0] == nil {
		return "", time.Time{}, s.observe("bind_state", ErrTicketInvalid)
	}
	if vals[1] == "1" {
		return "", time.Time{}, s.observe("bind_state", ErrTicketUsed)
	}
	ttl, err := s.rdb.PTTL(ctx, tk).Result()
	if err != nil || ttl <= 0 {
		return "", time.Time{}, s.observe("bind_state", errors.Join(err, ErrTicketInvalid))
	}
	state = randomToken()
	if err := s.rdb.Set(ctx, s.stateKey(state), tk, ttl).Err(); err != nil {
		return "", time.Time{}, s.observe("bind_state", err)
	}
	return state, s.now().Add(ttl), s.observe("bind_state", nil)
}

// consumeScript marks the ticket used and returns its user, "" when it is gone, or "\x00used".
var consumeScript = redis.NewScript(`
local u = redis.call('HGET', KEYS[1], 'user')
if not u then return '' end
if redis.call('HGET', KEYS[1], 'used') == '1' then return '\0used' end
redis.call('HSET', KEYS[1], 'used', '1')
return u`)

// ConsumeState spends the ticket that state is bound to and returns its user: ErrTicketInvalid
// for an unknown or expired state or ticket, ErrTicketUsed for a ticket used before.
func (s *Store) ConsumeState(ctx context.Context, state string) (user string, err error) {
	tk, err := s.rdb.Get(ctx, s.stateKey(state)).Result()
	if errors.Is(err, redis.Nil) {
		return "", s.observe("consume_state", ErrTicketInvalid)
	}
	if err != nil {
		return "", s.observe("consume_state", err)
	}
	user, err = consumeScript.Run(ctx, s.rdb, []string{tk}).Text()
	if err != nil {
		return "", s.observe("consume_state", err)
	}
	switch user {
	case "":
		return "", s.observe("consume_state", ErrTicketInvalid)
	case "\x00used":
		return "", s.observe("consume_state", ErrTicketUsed)
	}
	return user, s.observe("consume_state", nil)
}

// randomToken returns 192 random bits, base64url.
func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("read random: %v", err)) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
