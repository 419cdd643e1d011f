package rawsock

import (
	"syscall"
	"unsafe"
)

const supported = true

// Read is read(2) on fd as a raw system call, retried on EINTR; it
// returns EAGAIN rather than blocking on a non-blocking socket. Call it
// only on such a socket: a raw call that blocks holds its thread's P.
func Read(fd uintptr, p []byte) (int, syscall.Errno) { return raw(syscall.SYS_READ, fd, p) }

// Write is write(2) on fd as a raw system call, retried on EINTR; like
// Read, only for a non-blocking socket.
func Write(fd uintptr, p []byte) (int, syscall.Errno) { return raw(syscall.SYS_WRITE, fd, p) }

// raw makes the read or write system call trap on fd with p.
func raw(trap, fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	for {
		n, _, errno := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if errno != syscall.EINTR {
			if errno != 0 {
				return 0, errno
			}
			return int(n), 0
		}
	}
}
