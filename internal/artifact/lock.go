package artifact

import (
	"os"

	"golang.org/x/sys/unix"
)

// lockShared waits for a shared flock on f; it is released when f closes.
func lockShared(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_SH)
		if err != unix.EINTR {
			return err
		}
	}
}

// tryLockExclusive takes an exclusive flock on f without waiting and
// reports whether it got it.
func tryLockExclusive(f *os.File) bool {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			return err == nil
		}
	}
}
