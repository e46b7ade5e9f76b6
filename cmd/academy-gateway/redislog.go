package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/config"
)

// redisLog routes go-redis's own log lines (dial failures, pool and cluster notices) into the
// command's zap logger, so the JSON log stream holds only JSON. go-redis has one process-wide
// logger (redis.SetLogger), not one per client: main installs a single redisLog for the process
// and each command points it at its logger. That is sound because a process runs one command
// with one logger; tests, which run many apps in one process, leave it unset.
type redisLog struct {
	target atomic.Pointer[zap.Logger]
}

// Printf implements go-redis's internal.Logging: one WARN line per message (go-redis logs only
// trouble), on the "redis" logger.
func (r *redisLog) Printf(_ context.Context, format string, args ...any) {
	if l := r.target.Load(); l != nil {
		l.Warn(strings.TrimPrefix(fmt.Sprintf(format, args...), "redis: "))
	}
}

// use makes l the destination of go-redis's lines; a nil r (tests) does nothing.
func (r *redisLog) use(l *zap.Logger) {
	if r != nil {
		r.target.Store(l.Named("redis"))
	}
}

// logger builds the command's logger from the configuration (newLogger) and routes go-redis's
// lines into it.
func (e env) logger(c config.Log) *zap.Logger {
	l := newLogger(c, e.stderr)
	e.redisLog.use(l)
	return l
}

// serveLoggers is logger's counterpart for the commands that serve requests (newServeLoggers).
func (e env) serveLoggers(c config.Log) (log, access *zap.Logger, stop func()) {
	log, access, stop = newServeLoggers(c, e.stderr, accessFlushInterval)
	e.redisLog.use(log)
	return log, access, stop
}
