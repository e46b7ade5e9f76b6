//go:build unix

package proxy

import "syscall"

// peekable reports, without waiting, whether the socket fd has something to read: bytes, an
// end of stream, or an error.
func peekable(fd uintptr) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n > 0 || err == nil || (err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR)
}
