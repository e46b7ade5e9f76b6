// Package credential checks the credentials callers present to the gateway's own surfaces (the
// admin token, the forward-auth token): parsing a Bearer header and comparing a presented secret
// with the configured one in constant time.
package credential

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// Bearer returns the credential of an Authorization header value of the Bearer scheme. The
// scheme name is case-insensitive (RFC 7235 §2.1); the credential is what follows the spaces after
// it, and must be non-empty and free of spaces. Trailing white space is not part of a field value
// (RFC 9110 §5.5) and is ignored.
func Bearer(header string) (string, bool) {
	scheme, rest, ok := strings.Cut(strings.TrimRight(header, " \t"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token := strings.TrimLeft(rest, " ")
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// Secret is a configured secret that presented values are compared with. The comparison runs on
// SHA-256 digests in constant time, so neither the secret's bytes nor its length show in the
// timing. The zero Secret (and one made from "") matches nothing.
type Secret struct {
	sum [sha256.Size]byte
	set bool
}

// NewSecret returns the Secret s.
func NewSecret(s string) Secret {
	return Secret{sum: sha256.Sum256([]byte(s)), set: s != ""}
}

// Matches reports whether presented is the secret.
func (s Secret) Matches(presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], s.sum[:]) == 1 && s.set
}
