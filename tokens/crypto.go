package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// ErrDecrypt means a stored connection record is corrupt: it does not decode, or its sealed
// tokens do not open (wrong or removed key, tampering, or a record copied from another user,
// whose id was the associated data). Such a record is refused, never forwarded, and never taken
// for a Redis outage (docs/reference.md §6): the Manager answers it as ErrReauthRequired (the user's next
// authorization overwrites the record), the admin API lists it as "undecryptable".
var ErrDecrypt = errors.New("connection record is corrupt")

// keyIDLen is the length of the key fingerprint that prefixes every ciphertext, so the right
// key is found directly after a rotation.
const keyIDLen = 4

// Keyring seals token records with AES-256-GCM. The first key encrypts; every key decrypts, so
// a new key is rolled out by listing it first and old records are re-encrypted on their next write.
type Keyring struct {
	keys []keyringEntry
}

type keyringEntry struct {
	id   [keyIDLen]byte
	aead cipher.AEAD
}

// NewKeyring builds a keyring from base64-encoded 32-byte keys, the first being the current one.
func NewKeyring(b64Keys []string) (*Keyring, error) {
	if len(b64Keys) == 0 {
		return nil, errors.New("new keyring: no keys")
	}
	kr := &Keyring{}
	for i, k := range b64Keys {
		raw, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("new keyring: key %d is not base64 of 32 bytes", i+1)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("new keyring: key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("new keyring: key %d: %w", i+1, err)
		}
		sum := sha256.Sum256(raw)
		e := keyringEntry{aead: aead}
		copy(e.id[:], sum[:])
		kr.keys = append(kr.keys, e)
	}
	return kr, nil
}

// Seal encrypts plaintext with the current key, binding aad (the user id) into the tag.
// The result is keyID ‖ nonce ‖ ciphertext.
func (kr *Keyring) Seal(plaintext, aad []byte) []byte {
	k := kr.keys[0]
	out := make([]byte, keyIDLen+k.aead.NonceSize(), keyIDLen+k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	copy(out, k.id[:])
	if _, err := rand.Read(out[keyIDLen:]); err != nil {
		panic(fmt.Sprintf("read random nonce: %v", err)) // crypto/rand never fails on supported platforms
	}
	return k.aead.Seal(out, out[keyIDLen:], plaintext, aad)
}

// Open decrypts a Seal result with the key it names. It reports whether the record was sealed
// with an older key (and so should be re-sealed on its next write).
func (kr *Keyring) Open(sealed, aad []byte) (plaintext []byte, stale bool, err error) {
	if len(sealed) < keyIDLen {
		return nil, false, ErrDecrypt
	}
	for i, k := range kr.keys {
		if string(sealed[:keyIDLen]) != string(k.id[:]) {
			continue
		}
		ns := k.aead.NonceSize()
		if len(sealed) < keyIDLen+ns {
			return nil, false, ErrDecrypt
		}
		pt, err := k.aead.Open(nil, sealed[keyIDLen:keyIDLen+ns], sealed[keyIDLen+ns:], aad)
		if err != nil {
			return nil, false, ErrDecrypt
		}
		return pt, i > 0, nil
	}
	return nil, false, fmt.Errorf("%w: sealed with a key that is no longer configured", ErrDecrypt)
}
