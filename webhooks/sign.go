package webhooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
)

// Signer computes Standard Webhooks signatures: HMAC-SHA256 over "<id>.<timestamp>.<body>" with
// the decoded secret, as "v1,<base64>".
type Signer struct {
	key []byte
}

// NewSigner decodes a whsec_<base64> secret (webhooks.secret).
func NewSigner(secret string) (*Signer, error) {
	raw, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New("webhook secret: want whsec_ followed by base64")
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) == 0 {
		return nil, errors.New("webhook secret: the part after whsec_ is not base64")
	}
	return &Signer{key: key}, nil
}

// Sign returns the webhook-signature header value for one attempt.
func (s *Signer) Sign(id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// randomID returns 128 random bits in hex, the unique part of a webhook-id.
func randomID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("read random: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}
