// Package audit writes the audit trail: one structured log line (logger "audit", message
// "audit") for every change an operator makes through the admin API or the CLI, saying what
// (action), to whom (user, key id), and from where (the admin API client's address, or "cli").
// Fields are chosen by the callers from ids and counts only: never a key, token, link or secret.
package audit

import "go.uber.org/zap"

// Actions, the values of the `action` field.
const (
	KeyCreated        = "key.created"
	KeyImported       = "key.imported"
	KeyRevoked        = "key.revoked"
	LinkIssued        = "link.issued"
	ConnectionRevoked = "connection.revoked"
	Rekey             = "rekey"
)

// FromCLI is the `from` of changes made by a management command.
const FromCLI = "cli"

// Logger writes audit lines. The zero Logger writes nothing.
type Logger struct {
	l *zap.Logger
}

// New returns a Logger writing through base, named "audit".
func New(base *zap.Logger) Logger {
	if base == nil {
		return Logger{}
	}
	return Logger{l: base.Named("audit")}
}

// Record writes one audit line: action, from, and the given fields (user, key_id, counts…).
func (a Logger) Record(action, from string, fields ...zap.Field) {
	if a.l == nil {
		return
	}
	a.l.Info("audit", append([]zap.Field{zap.String("action", action), zap.String("from", from)}, fields...)...)
}
