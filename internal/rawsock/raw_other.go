//go:build !linux

package rawsock

import "syscall"

// Elsewhere than Linux, connections keep net.Conn's own methods; Read and
// Write are the ordinary system calls, for callers that hold a file
// descriptor.
const supported = false

// Read is read(2) on fd, retried on EINTR.
func Read(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, err := syscall.Read(int(fd), p)
		if err != syscall.EINTR {
			return max(n, 0), errno(err)
		}
	}
}

// Write is write(2) on fd, retried on EINTR.
func Write(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, err := syscall.Write(int(fd), p)
		if err != syscall.EINTR {
			return max(n, 0), errno(err)
		}
	}
}

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EIO
}
