package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
)

// stderrRedisLog stands in for go-redis's default logger once a test is done with its own.
type stderrRedisLog struct{}

func (stderrRedisLog) Printf(_ context.Context, format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...) // go-redis's messages start with "redis: "
}

// TestRedisLogsAreJSON: go-redis's own lines (here: failed dials to a Redis that is down) reach
// stderr as JSON lines of the "redis" logger, like every other line, never as plain text. Not
// parallel: go-redis's logger is process-wide, as main sets it.
func TestRedisLogsAreJSON(t *testing.T) {
	rl := &redisLog{}
	redis.SetLogger(rl)
	t.Cleanup(func() { redis.SetLogger(stderrRedisLog{}) })
	cfg := writeConfig(t, "oauth:\n  client_id: id\n  client_secret: secret\nsecurity:\n  encryption_keys: [\""+cliEncryptionKey+"\"]\n"+
		"redis:\n  url: \""+closedPortURL(t)+"\"\n")
	var stdout, stderr bytes.Buffer
	e := env{getenv: mapEnv(nil), stdout: &stdout, stderr: &stderr, redisLog: rl}
	wantExit(t, e.run(t.Context(), []string{"keys", "list", "--config", cfg}), 1, "token store unavailable")
	var fromRedis int
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec struct {
			Level, Logger, Msg string
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("stderr line is not JSON: %q", line)
			continue
		}
		if rec.Logger == "redis" {
			fromRedis++
			if rec.Level != "warn" || strings.HasPrefix(rec.Msg, "redis: ") {
				t.Errorf("go-redis line %+v, want level warn without the redis: prefix", rec)
			}
		}
	}
	if fromRedis == 0 {
		t.Errorf("no line of the redis logger; stderr:\n%s", stderr.String())
	}
}

// TestConsoleColour: log.format console colours levels only on a terminal; a buffer or a file
// gets plain text.
func TestConsoleColour(t *testing.T) {
	t.Parallel()
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var buf bytes.Buffer
	for _, w := range []struct {
		name string
		log  func(string)
		read func() string
	}{
		{"buffer", func(m string) { newLogger(config.Log{Level: "info", Format: "console"}, &buf).Info(m) }, buf.String},
		{"file", func(m string) { newLogger(config.Log{Level: "info", Format: "console"}, file).Info(m) }, func() string {
			b, _ := os.ReadFile(file.Name())
			return string(b)
		}},
	} {
		w.log("hello")
		if out := w.read(); !strings.Contains(out, "INFO\thello") || strings.Contains(out, "\x1b[") {
			t.Errorf("console log to a %s = %q, want plain INFO without colour codes", w.name, out)
		}
	}
	if isTerminal(file) || isTerminal(&buf) {
		t.Error("isTerminal is true for a file or a buffer")
	}
	if tty, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil { // a character device, as a terminal is
		defer tty.Close()
		if !isTerminal(tty) {
			t.Errorf("isTerminal(%s) = false, want true for a character device", os.DevNull)
		}
	}
}

// countingWriter counts the writes that reach the log stream.
type countingWriter struct {
	syncBuffer
	writes atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes.Add(1)
	return w.syncBuffer.Write(p)
}

// TestServeLoggersBatchAccessLines: the request path's INFO lines wait in the batch until it is
// full, another line is written (they go first: the stream keeps its order), a warning of the
// request path is, or stop; nothing is lost, and each flush is one write.
func TestServeLoggersBatchAccessLines(t *testing.T) {
	t.Parallel()
	start := func(flush time.Duration) (w *countingWriter, log, access *zap.Logger, stop func()) {
		w = &countingWriter{}
		log, access, stop = newServeLoggers(config.Log{Level: "info", Format: "json"}, w, flush)
		return w, log, access, stop
	}
	for _, tc := range []struct {
		name   string
		do     func(log, access *zap.Logger)
		before []string // the messages written before stop, in order
		writes int64    // the writes they took
		after  []string // all messages, in order, once stop has returned
	}{
		{"an access line waits", func(_, access *zap.Logger) { access.Info("request") },
			nil, 0, []string{"request"}},
		{"another line writes the held ones first", func(log, access *zap.Logger) {
			access.Info("request")
			access.Info("request")
			log.Info("key revoked")
		}, []string{"request", "request", "key revoked"}, 1, []string{"request", "request", "key revoked"}},
		{"a warning of the request path is written at once", func(_, access *zap.Logger) {
			access.Info("request")
			access.Warn("request failed")
		}, []string{"request", "request failed"}, 1, []string{"request", "request failed"}},
		{"a line of another logger with nothing held", func(log, _ *zap.Logger) { log.Info("listening") },
			[]string{"listening"}, 1, []string{"listening"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, log, access, stop := start(time.Hour)
			tc.do(log, access)
			if diff := cmp.Diff(tc.before, messages(t, w.String())); diff != "" {
				t.Errorf("written before stop (-want +got):\n%s", diff)
			}
			if got := w.writes.Load(); got != tc.writes {
				t.Errorf("%d writes before stop, want %d", got, tc.writes)
			}
			stop()
			if diff := cmp.Diff(tc.after, messages(t, w.String())); diff != "" {
				t.Errorf("written after stop (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("a full batch is written", func(t *testing.T) {
		t.Parallel()
		w, _, access, stop := start(time.Hour)
		path := strings.Repeat("p", 1000)
		for range 40 { // about 40 KiB of lines, where a batch holds 32
			access.Info("request", zap.String("path", path))
		}
		if n := len(messages(t, w.String())); n == 0 || n == 40 || w.writes.Load() != 1 {
			t.Errorf("%d lines in %d writes before stop, want one write of a full batch", n, w.writes.Load())
		}
		stop()
		if n := len(messages(t, w.String())); n != 40 {
			t.Errorf("%d lines after stop, want 40", n)
		}
	})
	t.Run("a held line is written within the flush interval", func(t *testing.T) {
		t.Parallel()
		w, _, access, stop := start(20 * time.Millisecond)
		defer stop()
		access.Info("request")
		testutil.EventuallyTrue(t, 5*time.Second, "the access line in the stream", func() bool {
			return strings.Contains(w.String(), `"msg":"request"`)
		})
	})
}

// messages is the msg of each JSON line in out.
func messages(t *testing.T, out string) []string {
	t.Helper()
	var msgs []string
	for line := range strings.Lines(out) {
		var rec struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %q is not JSON: %v", line, err)
		}
		msgs = append(msgs, rec.Msg)
	}
	return msgs
}

// TestServeAccessLinesInOrder: the serve command batches its access lines, yet its stream keeps
// its order: the access line of each request is in it, before the line that says the gateway is
// shutting down, however little time has passed since the requests.
func TestServeAccessLinesInOrder(t *testing.T) {
	t.Parallel()
	proxyAddr, opsAddr := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, "listen:\n  proxy: \""+proxyAddr+"\"\n  ops: \""+opsAddr+"\"\n"+
		"oauth:\n  client_id: id\n  client_secret: secret\nredis:\n  url: \"\"\n"+
		"security:\n  encryption_keys: [\""+cliEncryptionKey+"\"]\n")
	stderr := &syncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfg}, mapEnv(nil), io.Discard, stderr) }()
	testutil.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + opsAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz = %d", resp.StatusCode)
		}
		return nil
	})
	// Its own transport, so that no connection it holds keeps Shutdown waiting.
	client := &http.Client{Transport: &http.Transport{}}
	const requests = 3
	for range requests {
		req, _ := http.NewRequest(http.MethodGet, "http://"+proxyAddr+"/api/v1/movies", nil)
		req.Header.Set("X-Api-Key", "k1-not-a-known-key")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("unknown key: %d, want 401", resp.StatusCode)
		}
	}
	client.CloseIdleConnections()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return within 30 s of its context's end")
	}
	var msgs []string
	for _, m := range messages(t, stderr.String()) {
		if m == "request" || m == "shutting down" {
			msgs = append(msgs, m)
		}
	}
	if want := append(slices.Repeat([]string{"request"}, requests), "shutting down"); !slices.Equal(msgs, want) {
		t.Errorf("access and shutdown lines %q, want %q:\n%s", msgs, want, stderr)
	}
}
