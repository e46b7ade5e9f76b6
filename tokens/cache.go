package tokens

import (
	"sync"
	"time"
)

// cache is a bounded in-process map whose entries are fresh for ttl and then kept as a stale
// fallback for when Redis cannot be reached. It holds negative answers too (unknown key, no
// connection), so a flood of bad keys does not become a flood of Redis reads.
type cache[V any] struct {
	mu    sync.RWMutex
	ttl   time.Duration
	max   int
	items map[string]cacheEntry[V]
}

type cacheEntry[V any] struct {
	val V
	err error
	at  time.Time
}

func newCache[V any](ttl time.Duration, max int) *cache[V] {
	return &cache[V]{ttl: ttl, max: max, items: make(map[string]cacheEntry[V])}
}

// get returns the entry for k and whether it is still fresh at now.
func (c *cache[V]) get(k string, now time.Time) (e cacheEntry[V], fresh, ok bool) {
	c.mu.RLock()
	e, ok = c.items[k]
	c.mu.RUnlock()
	return e, ok && now.Sub(e.at) < c.ttl, ok
}

func (c *cache[V]) put(k string, v V, err error, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; !ok && len(c.items) >= c.max {
		for old := range c.items { // map order is random: this evicts a random entry
			delete(c.items, old)
			break
		}
	}
	c.items[k] = cacheEntry[V]{val: v, err: err, at: now}
}

func (c *cache[V]) delete(k string) {
	c.mu.Lock()
	delete(c.items, k)
	c.mu.Unlock()
}
