package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/config"
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
