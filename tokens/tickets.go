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

// Ticket is what an onboarding ticket was issued for.
type Ticket struct {
	// User is the gateway user the link connects.
	User string
	// AllowNewIdentity lets the consent come from an Academy account other than the one the
	// user's connection recorded (`connections authorize --new-identity`).
	AllowNewIdentity bool
}

// CreateTicket issues a single-use onboarding ticket for user, valid for ttl. Only its hash is
// stored.
func (s *Store) CreateTicket(ctx context.Context, user string, ttl time.Duration) (ticket string, expiresAt time.Time, err error) {
	return s.CreateTicketFor(ctx, Ticket{User: user}, ttl)
}

// CreateTicketFor issues a single-use onboarding ticket for t, valid for ttl, storing t's flags
// with it. Only the ticket's hash is stored.
func (s *Store) CreateTicketFor(ctx context.Context, t Ticket, ttl time.Duration) (ticket string, expiresAt time.Time, err error) {
	ticket = randomToken()
	expiresAt = s.now().Add(ttl).UTC().Truncate(time.Second)
	allow := 0
	if t.AllowNewIdentity {
		allow = 1
	}
	err = s.rdb.HSet(ctx, s.ticketKey(ticket), "user", t.User, "used", 0, "new_identity", allow).Err()
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

// consumeScript marks the ticket used and returns {user, new_identity flag}, {""} when it is
// gone, or {"\0used"}.
var consumeScript = redis.NewScript(`
local u = redis.call('HGET', KEYS[1], 'user')
if not u then return {''} end
if redis.call('HGET', KEYS[1], 'used') == '1' then return {'\0used'} end
redis.call('HSET', KEYS[1], 'used', '1')
return {u, redis.call('HGET', KEYS[1], 'new_identity') or '0'}`)

// ConsumeState spends the ticket that state is bound to and returns its user: ErrTicketInvalid
// for an unknown or expired state or ticket, ErrTicketUsed for a ticket used before.
func (s *Store) ConsumeState(ctx context.Context, state string) (user string, err error) {
	t, err := s.ConsumeTicket(ctx, state)
	return t.User, err
}

// ConsumeTicket is ConsumeState returning the whole ticket.
func (s *Store) ConsumeTicket(ctx context.Context, state string) (Ticket, error) {
	tk, err := s.rdb.Get(ctx, s.stateKey(state)).Result()
	if errors.Is(err, redis.Nil) {
		return Ticket{}, s.observe("consume_state", ErrTicketInvalid)
	}
	if err != nil {
		return Ticket{}, s.observe("consume_state", err)
	}
	res, err := consumeScript.Run(ctx, s.rdb, []string{tk}).StringSlice()
	if err != nil || len(res) == 0 {
		return Ticket{}, s.observe("consume_state", errors.Join(err, errors.New("consume ticket: empty answer")))
	}
	switch res[0] {
	case "":
		return Ticket{}, s.observe("consume_state", ErrTicketInvalid)
	case "\x00used":
		return Ticket{}, s.observe("consume_state", ErrTicketUsed)
	}
	t := Ticket{User: res[0], AllowNewIdentity: len(res) > 1 && res[1] == "1"}
	return t, s.observe("consume_state", nil)
}

// randomToken returns 192 random bits, base64url.
func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("read random: %v", err)) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
