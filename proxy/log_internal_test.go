package proxy

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestAccessLineJSON: an access line written as one inline field is, byte for byte, the line the
// same values make as separate zap fields in the order of docs/reference.md §8.
func TestAccessLineJSON(t *testing.T) {
	line := accessLine{requestID: "4f1c-7", decision: decision{user: "alice", keyID: "key1", refreshed: true},
		method: "GET", urlPath: "/api/v1/movies/J%41ne", status: 200, outcome: "forwarded",
		duration: 1234567 * time.Nanosecond, upstream: 1034567 * time.Nanosecond}
	fields := func(l accessLine) []zap.Field {
		f := []zap.Field{zap.String("request_id", l.requestID), zap.String("user", l.user),
			zap.String("key_id", l.keyID), zap.String("method", l.method), zap.String("path", l.urlPath),
			zap.Int("status", l.status), zap.String("outcome", l.outcome), zap.Duration("duration", l.duration)}
		if l.proxied {
			f = append(f, zap.Duration("upstream_duration", l.upstream))
		}
		return append(f, zap.Bool("refreshed", l.refreshed))
	}
	for _, tc := range []struct {
		name    string
		proxied bool
	}{{"proxied request", true}, {"forward-auth check", false}} {
		t.Run(tc.name, func(t *testing.T) {
			l := line
			l.proxied = tc.proxied
			enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
			entry := zapcore.Entry{Level: zap.InfoLevel, Time: time.Unix(1764633600, 0), Message: "request"}
			want, err := enc.EncodeEntry(entry, fields(l))
			if err != nil {
				t.Fatal(err)
			}
			got, err := enc.EncodeEntry(entry, []zap.Field{zap.Inline(&l)})
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("inline line\n%s\nwant\n%s", got, want)
			}
		})
	}
}
