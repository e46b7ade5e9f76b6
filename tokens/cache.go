package tokens

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// cache is a bounded in-process map whose entries are fresh for ttl and then kept as a stale
// fallback for when Redis cannot be reached. It holds negative answers too (no connection, a
// revoked key). Refills are single-flight (fill): when an entry expires under load, one caller
// reads Redis and the others wait for its answer, so a warm entry costs at most one Redis read
// per ttl per process however many requests use it (issue 13: 548 HMGET in 5 s for one key at
// 256 connections before, 10 after).
//
// Negative answers live apart, under their own smaller bound, so unknown keys (a flood of random
// ones before the key filter is built, see keyfilter.go) can neither grow memory past it nor
// evict the records of keys in use.
type cache[V any] struct {
	mu     sync.RWMutex
	ttl    time.Duration
	max    int
	maxNeg int
	items  map[string]cacheEntry[V] // answers without error
	neg    map[string]cacheEntry[V] // negative answers (err set)

	fillMu sync.Mutex
	fills  map[string]*cacheFill[V] // refills in progress, by flight key
}

// cacheFill is one refill in progress; done is closed once val and err are set.
type cacheFill[V any] struct {
	done chan struct{}
	val  V
	err  error
}

type cacheEntry[V any] struct {
	val V
	err error
	at  time.Time
}

// newCache returns a cache of at most max answers and maxNeg negative answers.
func newCache[V any](ttl time.Duration, max, maxNeg int) *cache[V] {
	return &cache[V]{ttl: ttl, max: max, maxNeg: maxNeg,
		items: make(map[string]cacheEntry[V]), neg: make(map[string]cacheEntry[V])}
}

// get returns the entry for k and whether it is still fresh at now.
func (c *cache[V]) get(k string, now time.Time) (e cacheEntry[V], fresh, ok bool) {
	c.mu.RLock()
	e, ok = c.items[k]
	if !ok {
		e, ok = c.neg[k]
	}
	c.mu.RUnlock()
	return e, ok && now.Sub(e.at) < c.ttl, ok
}

func (c *cache[V]) put(k string, v V, err error, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	into, other, bound := c.items, c.neg, c.max
	if err != nil {
		into, other, bound = c.neg, c.items, c.maxNeg
	}
	delete(other, k)
	if _, ok := into[k]; !ok && len(into) >= bound {
		for old := range into { // map order is random: this evicts a random entry
			delete(into, old)
			break
		}
	}
	into[k] = cacheEntry[V]{val: v, err: err, at: now}
}

func (c *cache[V]) delete(k string) {
	c.mu.Lock()
	delete(c.items, k)
	delete(c.neg, k)
	c.mu.Unlock()
}

// size returns the number of answers and of negative answers held, fresh or stale.
func (c *cache[V]) size() (answers, negative int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.items), len(c.neg)
}

// fill runs load once for all callers that ask with the same key while it runs: the first runs
// it, the others wait for its result or for their own ctx. load decides what to put in the
// cache. It must not depend on the first caller's cancellation, since the others share its
// result: load reads Redis with a context detached from the caller's, bounded by the store's
// own timeouts.
//
// cached is asked again once no refill is in progress, before starting one: a caller that
// missed just before the previous refill put its entry then takes that entry instead of reading
// Redis a second time (the refill puts before it ends).
func (c *cache[V]) fill(ctx context.Context, key string, cached func() (V, error, bool), load func() (V, error)) (V, error) {
	c.fillMu.Lock()
	if f, ok := c.fills[key]; ok {
		c.fillMu.Unlock()
		select {
		case <-f.done:
			return f.val, f.err
		case <-ctx.Done():
			var zero V
			return zero, fmt.Errorf("wait for a cache refill: %w", ctx.Err())
		}
	}
	if v, err, ok := cached(); ok {
		c.fillMu.Unlock()
		return v, err
	}
	f := &cacheFill[V]{done: make(chan struct{})}
	if c.fills == nil {
		c.fills = make(map[string]*cacheFill[V])
	}
	c.fills[key] = f
	c.fillMu.Unlock()

	f.val, f.err = load()
	c.fillMu.Lock()
	delete(c.fills, key)
	c.fillMu.Unlock()
	close(f.done)
	return f.val, f.err
}
