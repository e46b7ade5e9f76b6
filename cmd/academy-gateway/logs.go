package main

import (
	"io"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/academy-gateway/academy-gateway/config"
)

// Access lines wait in a batch of accessBatchSize bytes for at most accessFlushInterval
// (newServeLoggers).
const (
	accessBatchSize     = 32 << 10
	accessFlushInterval = time.Second
)

// newLogger builds the zap logger of log.level and log.format, writing each line to w at once.
func newLogger(c config.Log, w io.Writer) *zap.Logger {
	enc, level := encoding(c, w)
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level))
}

// newServeLoggers builds the loggers of a serving gateway. log writes each line at once, as
// newLogger's does. access is for the request path: its INFO lines, the access lines of
// docs/reference.md §8, wait in a batch that is written when it is full, at least every flush,
// before any other line (the stream keeps its order), and by stop, which the caller calls after
// the last request. One write(2) per request cost 4 % of the gateway's CPU per request with
// stderr on /dev/null and 8–10 % on a pipe (docs/benchmarks.md). A crash that stop does not see
// loses at most a flush interval of access lines.
func newServeLoggers(c config.Log, w io.Writer, flush time.Duration) (log, access *zap.Logger, stop func()) {
	enc, level := encoding(c, w)
	// Without w's Sync: flushing is a write, not an fsync a second of a log file.
	batch := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(struct{ io.Writer }{w}),
		Size: accessBatchSize, FlushInterval: flush}
	now := zapcore.NewCore(enc, afterBatch{batch}, level)
	held := zap.LevelEnablerFunc(func(l zapcore.Level) bool { return level.Enabled(l) && l < zapcore.WarnLevel })
	told := zap.LevelEnablerFunc(func(l zapcore.Level) bool { return level.Enabled(l) && l >= zapcore.WarnLevel })
	access = zap.New(zapcore.NewTee(zapcore.NewCore(enc, batch, held), zapcore.NewCore(enc, afterBatch{batch}, told)))
	return zap.New(now), access, func() { _ = batch.Stop() }
}

// afterBatch writes each line at once, after the access lines the batch holds.
type afterBatch struct{ *zapcore.BufferedWriteSyncer }

func (b afterBatch) Write(p []byte) (int, error) {
	n, err := b.BufferedWriteSyncer.Write(p)
	if err != nil {
		return n, err
	}
	return n, b.Sync()
}

// encoding is the encoder and level of log.level and log.format. The console format colours
// levels only when w is a terminal: colour codes in a file or a log collector are noise.
func encoding(c config.Log, w io.Writer) (zapcore.Encoder, zapcore.Level) {
	level, _ := zapcore.ParseLevel(c.Level) // validated by config
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey, enc.EncodeTime = "ts", zapcore.ISO8601TimeEncoder
	if c.Format != "console" {
		return zapcore.NewJSONEncoder(enc), level
	}
	enc.EncodeLevel = zapcore.CapitalLevelEncoder
	if isTerminal(w) {
		enc.EncodeLevel = zapcore.CapitalColorLevelEncoder
	}
	return zapcore.NewConsoleEncoder(enc), level
}

// isTerminal reports whether w is a character device such as a terminal (not a file, pipe or
// buffer).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
