package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"hash/crc32"
	"strings"
	"unsafe"
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
	var out [8]byte
	return string(appendChecksum(out[:0], body))
}

// appendChecksum appends body's checksum to dst (no allocation when dst has room for 7 bytes).
func appendChecksum(dst []byte, body string) []byte {
	sum := crc32.Update(0, crc32.IEEETable, unsafeBytes(body))
	var enc [8]byte
	keyEncoding.Encode(enc[:], []byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
	return append(dst, enc[:keyChecksumLen]...)
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
	var want [8]byte
	return string(appendChecksum(want[:0], body)) == sum // the comparison does not allocate
}

// HashKey returns the hex SHA-256 of key: what is stored instead of the key. Keys carry at least
// 160 random bits (legacy keys are the Academy's own random keys), so an unsalted hash suffices.
func HashKey(key string) string {
	var hexed [sha256.Size * 2]byte
	hashKey(key, &hexed)
	return string(hexed[:])
}

// hashKey writes HashKey(key) to hexed and returns the digest, without allocating: the request
// path hashes every key it is sent.
func hashKey(key string, hexed *[sha256.Size * 2]byte) [sha256.Size]byte {
	sum := sha256.Sum256(unsafeBytes(key))
	hex.Encode(hexed[:], sum[:])
	return sum
}

// unsafeBytes views s as bytes, for functions that only read them (hashes, checksums), so that
// hashing a key does not copy it to the heap. The bytes must not be written.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// keyID derives a key's public id from its hash: short, stable and safe to show and log.
func keyID(hash string) string { return hash[:16] }
