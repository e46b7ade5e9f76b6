// Package webhooks tells the operator's system about connection lifecycle events (docs/reference.md §9):
// Standard Webhooks requests, signed per attempt, delivered at least once across replicas.
//
// Events are appended to a Redis Stream before the change they report is acknowledged
// (Queue.Publish). Every replica runs a Dispatcher that reads the stream through one consumer
// group, so each event is handed to one replica; a 2xx answer acknowledges and deletes the
// entry (the stream holds only what is not delivered yet), a failure leaves it pending and
// schedules a retry with exponential backoff and jitter. A replica keeps the idle time of the
// entries it holds low (a heartbeat); an entry whose holder died goes idle and another replica
// claims it with XAUTOCLAIM. After retrying for RetryFor an event is moved to a second stream
// of failed events, kept for inspection. A replica holds at most Batch events in memory,
// however long the receiver is down: the rest wait in Redis.
//
// Redis layout under the prefix P (one hash tag, so every multi-key step is one Cluster slot):
//
//	P{wh}:events    stream  id (webhook-id), type, body (the exact JSON sent)
//	P{wh}:attempts  hash    stream entry id → JSON of attempts, first and next attempt
//	P{wh}:failed    stream  events given up, with their last error (capped at FailedKeep)
package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/config"
)

// Event is one lifecycle event. Data is marshalled as the body's "data" and must never carry a
// token, key or secret: build events with the constructors below.
type Event struct {
	Type string
	Time time.Time
	Data any
}

// AcademyUser is the Academy identity of a connection.
type AcademyUser struct {
	ID   string `json:"id"`
	User string `json:"user"`
}

// Connected is connection.connected: onboarding stored a connection for user as the Academy
// account au; replaced says the user had a connection before.
func Connected(at time.Time, user string, au AcademyUser, replaced bool) Event {
	return Event{Type: config.EventConnected, Time: at, Data: struct {
		User        string      `json:"user"`
		AcademyUser AcademyUser `json:"academy_user"`
		Replaced    bool        `json:"replaced"`
	}{user, au, replaced}}
}

// ReauthRequired is connection.reauth_required with reason one of tokens.Reason*.
func ReauthRequired(at time.Time, user, reason string) Event {
	return Event{Type: config.EventReauthRequired, Time: at, Data: struct {
		User   string `json:"user"`
		Reason string `json:"reason"`
	}{user, reason}}
}

// Revoked is connection.revoked: an operator revoked user's connection.
func Revoked(at time.Time, user string) Event {
	return Event{Type: config.EventRevoked, Time: at, Data: struct {
		User string `json:"user"`
	}{user}}
}

// KeyRevoked is key.revoked: the API key with keyID (never the key) of user was revoked.
func KeyRevoked(at time.Time, user, keyID string) Event {
	return Event{Type: config.EventKeyRevoked, Time: at, Data: struct {
		User  string `json:"user"`
		KeyID string `json:"key_id"`
	}{user, keyID}}
}

// Body is the JSON body of e (Standard Webhooks: type, timestamp, data).
func Body(e Event) ([]byte, error) {
	return json.Marshal(struct {
		Type      string `json:"type"`
		Timestamp string `json:"timestamp"`
		Data      any    `json:"data"`
	}{e.Type, e.Time.UTC().Format(time.RFC3339Nano), e.Data})
}

// group is the consumer group every replica reads the stream through.
const group = "delivery"

// FailedKeep bounds the stream of failed events (approximately: the oldest go first).
const FailedKeep = 10000

// Queue records events in Redis. A nil *Queue records nothing (webhooks off).
type Queue struct {
	rdb    redis.UniversalClient
	prefix string
	events []string
}

// NewQueue returns a queue over rdb under prefix (the redis.key_prefix) that records the event
// types listed in events (webhooks.events) and ignores the others.
func NewQueue(rdb redis.UniversalClient, prefix string, events []string) *Queue {
	return &Queue{rdb: rdb, prefix: prefix, events: slices.Clone(events)}
}

func (q *Queue) streamKey() string   { return q.prefix + "{wh}:events" }
func (q *Queue) attemptsKey() string { return q.prefix + "{wh}:attempts" }
func (q *Queue) failedKey() string   { return q.prefix + "{wh}:failed" }

// Publish appends e to the stream, to be delivered by some replica. Callers publish before they
// acknowledge the change e reports, so an acknowledged change always has its event in Redis.
// Events of a type not configured are dropped.
func (q *Queue) Publish(ctx context.Context, e Event) error {
	if q == nil || !slices.Contains(q.events, e.Type) {
		return nil
	}
	body, err := Body(e)
	if err != nil {
		return fmt.Errorf("publish %s: encode: %w", e.Type, err)
	}
	err = q.rdb.XAdd(ctx, &redis.XAddArgs{Stream: q.streamKey(), Values: []any{
		"id", "msg_" + randomID(), "type", e.Type, "body", string(body),
	}}).Err()
	if err != nil {
		return fmt.Errorf("publish %s: %w", e.Type, err)
	}
	return nil
}

// Pending returns how many events are recorded and not yet delivered (or given up), all replicas
// together: delivered entries are deleted, so this is the stream's length (XLEN, O(1)).
func (q *Queue) Pending(ctx context.Context) (int64, error) {
	if q == nil {
		return 0, nil
	}
	n, err := q.rdb.XLen(ctx, q.streamKey()).Result()
	if err != nil {
		return 0, fmt.Errorf("count pending webhooks: %w", err)
	}
	return n, nil
}

// Failed is an event given up after retrying, as kept for inspection.
type Failed struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Body      string    `json:"body"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	FailedAt  time.Time `json:"failed_at"`
}

// Failed lists up to n failed events, newest first.
func (q *Queue) Failed(ctx context.Context, n int64) ([]Failed, error) {
	if q == nil {
		return nil, nil
	}
	msgs, err := q.rdb.XRevRangeN(ctx, q.failedKey(), "+", "-", n).Result()
	if err != nil {
		return nil, fmt.Errorf("list failed webhooks: %w", err)
	}
	out := make([]Failed, 0, len(msgs))
	for _, m := range msgs {
		f := Failed{ID: str(m.Values["id"]), Type: str(m.Values["type"]), Body: str(m.Values["body"]),
			LastError: str(m.Values["last_error"])}
		fmt.Sscan(str(m.Values["attempts"]), &f.Attempts)
		if ms, err := time.Parse(time.RFC3339Nano, str(m.Values["failed_at"])); err == nil {
			f.FailedAt = ms
		}
		out = append(out, f)
	}
	return out, nil
}

// ensureGroup creates the consumer group (and the stream) if missing. The group starts at the
// stream's beginning, so events published before any replica ran are delivered too.
func (q *Queue) ensureGroup(ctx context.Context) error {
	err := q.rdb.XGroupCreateMkStream(ctx, q.streamKey(), group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create webhook consumer group: %w", err)
	}
	return nil
}

// isNoGroup reports whether err is Redis's answer for a missing stream or group (after a FLUSHALL).
func isNoGroup(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "NOGROUP")
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
