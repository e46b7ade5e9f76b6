package audit_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/academy-gateway/academy-gateway/audit"
)

func TestRecord(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	audit.New(zap.New(core)).Record(audit.KeyRevoked, audit.FromCLI, zap.String("user", "alice"), zap.String("key_id", "0123456789abcdef"))
	audit.Logger{}.Record(audit.Rekey, audit.FromCLI) // the zero Logger writes nothing
	audit.New(nil).Record(audit.Rekey, audit.FromCLI)

	type line struct {
		Logger, Msg string
		Fields      map[string]any
	}
	var got []line
	for _, e := range logs.All() {
		got = append(got, line{e.LoggerName, e.Message, e.ContextMap()})
	}
	want := []line{{"audit", "audit", map[string]any{"action": "key.revoked", "from": "cli", "user": "alice", "key_id": "0123456789abcdef"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit lines (-want +got):\n%s", diff)
	}
}
