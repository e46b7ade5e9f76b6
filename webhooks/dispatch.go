package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/metrics"
)

// Options tune a Dispatcher. Zero values get the defaults named on each field; tests shorten
// the durations.
type Options struct {
	// URL receives the POSTs (webhooks.url). Required.
	URL string
	// Client sends them; nil: a client with AttemptTimeout that never follows redirects.
	Client *http.Client
	// Batch is the most events this replica holds (attempts in flight and retries waiting);
	// zero: 16. It bounds the gateway's memory whatever the receiver does.
	Batch int
	// AttemptTimeout bounds one delivery attempt; zero: 10s. Keep it below ClaimIdle/2.
	AttemptTimeout time.Duration
	// BackoffBase is the delay before the first retry (jittered to between half and all of it),
	// doubling with each retry; zero: 4s.
	BackoffBase time.Duration
	// BackoffMax caps the delay between two attempts; zero: 5m.
	BackoffMax time.Duration
	// RetryFor is how long after its first attempt an event is retried before it is given up
	// (counted failed, moved to the failed stream); zero: 1h.
	RetryFor time.Duration
	// ClaimIdle is how long an event may sit unattended in another replica's hands before this
	// one claims it (that replica died); zero: 30s. Holders renew their claim every third of it.
	ClaimIdle time.Duration
	// Poll is the longest wait for new events in one read; zero: 1s. It bounds shutdown too.
	Poll time.Duration
	// Consumer names this replica in the consumer group; empty: hostname, pid and a random part.
	Consumer string
	// ForgetAfter is how long a consumer (a replica, usually long gone) may stay idle with
	// nothing pending before it is removed from the group; zero: 1h.
	ForgetAfter time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Jitter returns a number in [0,1) that spreads retries; nil: math/rand.
	Jitter func() float64
	// Logger; nil: no logs. Never given a body or the secret.
	Logger *zap.Logger
}

func (o Options) withDefaults() Options {
	if o.Batch <= 0 {
		o.Batch = 16
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 10 * time.Second
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 4 * time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	if o.RetryFor <= 0 {
		o.RetryFor = time.Hour
	}
	if o.ClaimIdle <= 0 {
		o.ClaimIdle = 30 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.ForgetAfter <= 0 {
		o.ForgetAfter = time.Hour
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.AttemptTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Consumer == "" {
		host, _ := os.Hostname()
		o.Consumer = host + "-" + strconv.Itoa(os.Getpid()) + "-" + randomID()[:8]
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Jitter == nil {
		o.Jitter = rand.Float64
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// Dispatcher delivers the queue's events from this replica.
type Dispatcher struct {
	q      *Queue
	signer *Signer
	m      *metrics.Metrics
	opts   Options
	log    *zap.Logger
}

// NewDispatcher returns a dispatcher of q's events, signed with signer.
func NewDispatcher(q *Queue, signer *Signer, m *metrics.Metrics, opts Options) *Dispatcher {
	opts = opts.withDefaults()
	for _, e := range q.events { // series exist from the start, so increase() sees the first
		for _, r := range []string{metrics.WebhookSuccess, metrics.WebhookRetry, metrics.WebhookFailed} {
			m.WebhookDeliveries.WithLabelValues(e, r)
		}
	}
	return &Dispatcher{q: q, signer: signer, m: m, opts: opts, log: opts.Logger}
}

// held is an event this replica holds: in flight or waiting for its next attempt.
type held struct {
	entry string // stream entry id
	id    string // webhook-id
	typ   string
	body  []byte
	state attemptState
}

// attemptState is what survives in Redis between attempts, so a replica that claims an event
// continues its schedule.
type attemptState struct {
	Attempts int       `json:"n"`
	First    time.Time `json:"first,omitzero"`
	Next     time.Time `json:"next,omitzero"`
	Last     string    `json:"last,omitempty"` // the last failure: a status or a transport error
}

// Run delivers events until ctx ends. Redis failures are logged and retried.
func (d *Dispatcher) Run(ctx context.Context) {
	hold := make(map[string]*held, d.opts.Batch)
	var lastBeat, lastClaim, lastForget time.Time
	grouped := false
	for ctx.Err() == nil {
		if !grouped {
			if err := d.q.ensureGroup(ctx); err != nil {
				d.log.Warn("webhooks: create consumer group; retrying", zap.Error(err))
				d.pause(ctx, d.opts.Poll)
				continue
			}
			grouped = true
		}
		now := d.opts.Now()
		if len(hold) > 0 && now.Sub(lastBeat) >= d.opts.ClaimIdle/3 {
			d.heartbeat(ctx, hold)
			lastBeat = now
		}
		if len(hold) < d.opts.Batch && now.Sub(lastClaim) >= d.opts.ClaimIdle/3 {
			if err := d.claim(ctx, hold); err != nil {
				grouped = !isNoGroup(err)
				d.log.Warn("webhooks: claim idle events", zap.Error(err))
			}
			lastClaim = now
		}
		if now.Sub(lastForget) >= 4*d.opts.ClaimIdle {
			d.forgetConsumers(ctx)
			lastForget = now
		}
		if d.attemptDue(ctx, hold) {
			continue // attempts took time: renew claims and look again before reading
		}
		wait := d.opts.Poll
		for _, h := range hold {
			wait = min(wait, h.state.Next.Sub(now))
		}
		wait = max(wait, time.Millisecond) // BLOCK 0 would wait forever
		free := d.opts.Batch - len(hold)
		if free <= 0 {
			d.pause(ctx, wait)
			continue
		}
		if err := d.read(ctx, hold, free, wait); err != nil && ctx.Err() == nil {
			grouped = !isNoGroup(err)
			d.log.Warn("webhooks: read events", zap.Error(err))
			d.pause(ctx, d.opts.Poll)
		}
	}
}

func (d *Dispatcher) pause(ctx context.Context, wait time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// read takes up to n new events, due at once.
func (d *Dispatcher) read(ctx context.Context, hold map[string]*held, n int, wait time.Duration) error {
	res, err := d.q.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: group, Consumer: d.opts.Consumer, Streams: []string{d.q.streamKey(), ">"},
		Count: int64(n), Block: wait,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, s := range res {
		for _, m := range s.Messages {
			hold[m.ID] = d.newHeld(m)
		}
	}
	return nil
}

// newHeld is the stream entry m as held by this replica, due at once.
func (d *Dispatcher) newHeld(m redis.XMessage) *held {
	return &held{entry: m.ID, id: str(m.Values["id"]), typ: str(m.Values["type"]),
		body: []byte(str(m.Values["body"])), state: attemptState{Next: d.opts.Now()}}
}

// claim takes over events another replica left idle for ClaimIdle (it died), with their
// attempt schedule.
func (d *Dispatcher) claim(ctx context.Context, hold map[string]*held) error {
	msgs, _, err := d.q.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: d.q.streamKey(), Group: group, Consumer: d.opts.Consumer,
		MinIdle: d.opts.ClaimIdle, Start: "0-0", Count: int64(d.opts.Batch - len(hold)),
	}).Result()
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if _, ok := hold[m.ID]; ok || m.Values == nil {
			continue
		}
		h := d.newHeld(m)
		if raw, err := d.q.rdb.HGet(ctx, d.q.attemptsKey(), m.ID).Result(); err == nil {
			_ = json.Unmarshal([]byte(raw), &h.state)
		}
		d.log.Info("webhooks: claimed an event left by another replica", zap.String("webhook_id", h.id),
			zap.String("type", h.typ), zap.Int("attempts", h.state.Attempts))
		hold[m.ID] = h
	}
	return nil
}

// forgetConsumers removes consumers that hold nothing and have been idle for ForgetAfter: every
// replica start adds one, so the group would otherwise grow with every restart.
func (d *Dispatcher) forgetConsumers(ctx context.Context) {
	cs, err := d.q.rdb.XInfoConsumers(ctx, d.q.streamKey(), group).Result()
	if err != nil {
		d.log.Debug("webhooks: list consumers", zap.Error(err))
		return
	}
	for _, c := range cs {
		if c.Name == d.opts.Consumer || c.Pending > 0 || c.Idle < d.opts.ForgetAfter {
			continue
		}
		if err := forgetScript.Run(ctx, d.q.rdb, []string{d.q.streamKey()}, group, c.Name).Err(); err != nil {
			d.log.Debug("webhooks: remove idle consumer", zap.Error(err))
		}
	}
}

// forgetScript removes consumer ARGV[2] only while it holds nothing: XGROUP DELCONSUMER drops a
// consumer's pending entries, which would then never be delivered.
var forgetScript = redis.NewScript(`
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])`)

// heartbeatScript renews the claim of the entries (ARGV[3..]) still held by consumer ARGV[2]
// (resetting their idle time without counting a delivery) and returns them; the others were
// claimed by another replica meanwhile, or delivered.
var heartbeatScript = redis.NewScript(`
local kept = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    kept[#kept + 1] = ARGV[i]
  end
end
return kept`)

// heartbeat renews this replica's claims and forgets events it no longer holds.
func (d *Dispatcher) heartbeat(ctx context.Context, hold map[string]*held) {
	args := make([]any, 0, 2+len(hold))
	args = append(args, group, d.opts.Consumer)
	for id := range hold {
		args = append(args, id)
	}
	kept, err := heartbeatScript.Run(ctx, d.q.rdb, []string{d.q.streamKey()}, args...).StringSlice()
	if err != nil {
		d.log.Warn("webhooks: renew claims", zap.Error(err))
		return
	}
	still := make(map[string]bool, len(kept))
	for _, id := range kept {
		still[id] = true
	}
	for id := range hold {
		if !still[id] {
			delete(hold, id)
		}
	}
}

// attemptDue attempts every held event that is due, concurrently, and records the outcomes.
// It reports whether it attempted any.
func (d *Dispatcher) attemptDue(ctx context.Context, hold map[string]*held) bool {
	now := d.opts.Now()
	var due []*held
	for _, h := range hold {
		if !h.state.Next.After(now) {
			due = append(due, h)
		}
	}
	if len(due) == 0 {
		return false
	}
	errs := make([]error, len(due))
	var wg sync.WaitGroup
	for i, h := range due {
		wg.Go(func() { errs[i] = d.attempt(ctx, h) })
	}
	wg.Wait()
	for i, h := range due {
		if ctx.Err() != nil {
			return true // shutting down: the entries stay pending for whoever runs next
		}
		done, err := d.settle(ctx, h, errs[i])
		if err != nil {
			// Redis is away: keep the event and try again later (a duplicate delivery is
			// allowed, a hot loop is not).
			d.log.Warn("webhooks: record delivery outcome", zap.String("webhook_id", h.id), zap.Error(err))
			h.state.Next = d.opts.Now().Add(d.opts.Poll)
			continue
		}
		if done {
			delete(hold, h.entry)
		}
	}
	return true
}

// errStatus is a receiver's non-2xx answer.
type errStatus int

func (e errStatus) Error() string { return "receiver answered " + strconv.Itoa(int(e)) }

// attempt POSTs h once, signed for this attempt's timestamp.
func (d *Dispatcher) attempt(ctx context.Context, h *held) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.opts.URL, bytes.NewReader(h.body))
	if err != nil {
		return fmt.Errorf("build webhook request: %w", err)
	}
	ts := d.opts.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "academy-gateway")
	req.Header.Set("webhook-id", h.id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", d.signer.Sign(h.id, ts, h.body))
	resp, err := d.opts.Client.Do(req)
	if err != nil {
		// The URL may carry a receiver's token in its query: keep it out of logs and the failed
		// stream, keep the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errStatus(resp.StatusCode)
	}
	return nil
}

// forget queues, on p, what removes a settled entry: acknowledged in the group, deleted from the
// stream (so the stream holds only undelivered events) and its retry schedule dropped.
func (q *Queue) forget(ctx context.Context, p redis.Pipeliner, entry string) {
	p.XAck(ctx, q.streamKey(), group, entry)
	p.XDel(ctx, q.streamKey(), entry)
	p.HDel(ctx, q.attemptsKey(), entry)
}

// settle records the outcome of an attempt of h: delivered (acknowledged and deleted), given up
// (moved to the failed stream), or to be retried (its schedule saved in h and in Redis). done
// reports that h is settled for good and the caller forgets it.
func (d *Dispatcher) settle(ctx context.Context, h *held, err error) (done bool, _ error) {
	now := d.opts.Now()
	q := d.q
	if err == nil {
		_, terr := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			q.forget(ctx, p, h.entry)
			return nil
		})
		if terr != nil {
			return false, terr
		}
		d.m.WebhookDeliveries.WithLabelValues(h.typ, metrics.WebhookSuccess).Inc()
		d.log.Debug("webhook delivered", zap.String("webhook_id", h.id), zap.String("type", h.typ), zap.Int("retries", h.state.Attempts))
		return true, nil
	}
	st := h.state
	st.Attempts++
	if st.First.IsZero() {
		st.First = now
	}
	st.Last = err.Error()
	if now.Sub(st.First) >= d.opts.RetryFor {
		_, terr := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.XAdd(ctx, &redis.XAddArgs{Stream: q.failedKey(), MaxLen: FailedKeep, Approx: true, Values: []any{
				"id", h.id, "type", h.typ, "body", string(h.body), "attempts", st.Attempts,
				"last_error", st.Last, "failed_at", now.UTC().Format(time.RFC3339Nano)}})
			q.forget(ctx, p, h.entry)
			return nil
		})
		if terr != nil {
			return false, terr
		}
		d.m.WebhookDeliveries.WithLabelValues(h.typ, metrics.WebhookFailed).Inc()
		d.log.Error("webhook given up; kept in the failed stream", zap.String("webhook_id", h.id),
			zap.String("type", h.typ), zap.Int("attempts", st.Attempts), zap.String("last_error", st.Last))
		return true, nil
	}
	st.Next = now.Add(d.backoff(st.Attempts))
	raw, _ := json.Marshal(st)
	if herr := q.rdb.HSet(ctx, q.attemptsKey(), h.entry, raw).Err(); herr != nil {
		// The schedule lives on in memory; a replica that claims the event starts afresh.
		d.log.Warn("webhooks: save retry schedule", zap.Error(herr))
	}
	h.state = st
	d.m.WebhookDeliveries.WithLabelValues(h.typ, metrics.WebhookRetry).Inc()
	d.log.Warn("webhook attempt failed; will retry", zap.String("webhook_id", h.id), zap.String("type", h.typ),
		zap.Int("attempts", st.Attempts), zap.Time("next", st.Next), zap.Error(err))
	return false, nil
}

// backoff is the wait after the n-th failed attempt: BackoffBase doubling per attempt, capped at
// BackoffMax, jittered to between half and all of it.
func (d *Dispatcher) backoff(n int) time.Duration {
	w := d.opts.BackoffBase
	for i := 1; i < n && w < d.opts.BackoffMax; i++ {
		w *= 2
	}
	w = min(w, d.opts.BackoffMax)
	return w/2 + time.Duration(d.opts.Jitter()*float64(w/2))
}
