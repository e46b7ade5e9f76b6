// Package httpsyntax holds the RFC 9110 syntax checks that both sides of the proxy apply to
// HTTP/1.1 heads: h1server to the requests it keeps on its own loop, the upstream transport to
// the requests it writes. One definition of a token and of a field value for both.
package httpsyntax

// IsToken reports whether b is a token (RFC 9110 §5.6.2), the syntax of a method and of a
// field name: not empty, and only tchar bytes.
func IsToken[T string | []byte](b T) bool {
	if len(b) == 0 {
		return false
	}
	for i := range len(b) {
		if !TokenByte(b[i]) {
			return false
		}
	}
	return true
}

// TokenByte reports whether c is a tchar: a letter, a digit or one of !#$%&'*+-.^_`|~.
func TokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// ValidFieldValue reports whether v holds no control character but tab (what net/http's
// request parser accepts in a field value: visible ASCII, space, tab and obs-text).
func ValidFieldValue[T string | []byte](v T) bool {
	for i := range len(v) {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
