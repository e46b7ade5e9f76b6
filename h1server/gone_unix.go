//go:build unix

package h1server

import "syscall"

// gone reports, without waiting, whether the caller closed or reset the connection: a read
// would return its end or an error. Bytes waiting to be read (a next request) mean it is there.
func gone(raw syscall.RawConn) bool {
	g := false
	_ = raw.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		g = (n == 0 && err == nil) || (err != nil && err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR)
	})
	return g
}
