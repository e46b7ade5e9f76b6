package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"hash/crc32"
	"strings"
)

// KeyPrefix starts every key the gateway issues, so keys are recognisable in configs and by
// secret scanners. Legacy keys registered with --key keep whatever form they have.
const KeyPrefix = "agw_"

// keyEncoding is lowercase base32 without padding: unambiguous, URL- and header-safe.
var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

const (
	keyRandomBytes = 20 // 160 bits of entropy
	keyChecksumLen = 7  // base32 of a CRC-32
)

// NewAPIKey returns a fresh key: prefix, 32 random base32 characters and a 7-character CRC-32
// checksum, so a mistyped key is refused without a Redis lookup.
func NewAPIKey() string {
	b := make([]byte, keyRandomBytes)
	if _, err := rand.Read(b); err != nil {
		panic("read random key: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	body := keyEncoding.EncodeToString(b)
	return KeyPrefix + body + keyChecksum(body)
}

func keyChecksum(body string) string {
	sum := crc32.ChecksumIEEE([]byte(body))
	return keyEncoding.EncodeToString([]byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})[:keyChecksumLen]
}

// MinKeyLen and MaxKeyLen bound the length of any key, issued or legacy. The floor refuses
// what is certainly a mistake (a fragment, a placeholder, an unset variable's leftovers) and
// keeps keys out of guessing range; real v1 keys are long random strings.
const (
	MinKeyLen = 12
	MaxKeyLen = 512
)

// KeyRule says in words which keys WellFormed accepts: what `keys create --key`, POST
// /admin/keys and `keys import` register. Refusals quote it, the reference documents it.
const KeyRule = "a key is 12 to 512 printable ASCII characters (no spaces or control characters); " +
	"a key starting with " + KeyPrefix + " must be one this gateway issued (its checksum must match)"

// WellFormed reports whether key could be a valid key (KeyRule): an issued key (with KeyPrefix)
// must carry a matching checksum; any other key of MinKeyLen to MaxKeyLen printable ASCII
// characters may be a registered legacy key.
func WellFormed(key string) bool {
	if len(key) < MinKeyLen || len(key) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return false
		}
	}
	body, ok := strings.CutPrefix(key, KeyPrefix)
	if !ok {
		return true
	}
	if len(body) <= keyChecksumLen {
		return false
	}
	body, sum := body[:len(body)-keyChecksumLen], body[len(body)-keyChecksumLen:]
	return keyChecksum(body) == sum
}

// HashKey returns the hex SHA-256 of key: what is stored instead of the key. Keys carry at least
// 160 random bits (legacy keys are the Academy's own random keys), so an unsalted hash suffices.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// keyID derives a key's public id from its hash: short, stable and safe to show and log.
func keyID(hash string) string { return hash[:16] }
