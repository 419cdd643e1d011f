package process

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// A replica's Unix socket (Options.Sockets, replica.Handle.Socket) is
// opened here, as its TCP port is, and handed to the replica, which serves
// REST on it for the gateway: a request and its answer cost the kernel
// less over a Unix stream socket than over loopback TCP.
//
// Where the system has them (Linux), the socket has an abstract name,
// "@ebb-replica-<id>-<random>": it needs no file, so no path length limit
// and nothing to clean up, and it lasts exactly as long as the replica
// holds it, so a replica recovered after a restart of ebb keeps it. Any
// local user may connect to an abstract socket, as to a loopback port: the
// replica's secret guards both alike. Elsewhere the socket is a file in
// Options.SocketDir, a directory only ebb's user may enter, removed when
// the replica ends.

// abstractSockets reports whether sockets get abstract names; tests turn
// it off to try the fallback.
var abstractSockets = runtime.GOOS == "linux"

// maxSocketName bounds a socket's address: sun_path holds 108 bytes on
// Linux, 104 elsewhere.
const maxSocketName = 100

// openSocket opens the Unix socket of replica id, and returns its address
// and a file of it for the child. It returns "" when sockets are off or
// none could be opened (the replica then serves its TCP port alone, as
// well served if a little slower).
func (b *Backend) openSocket(ctx context.Context, id string) (string, *os.File) {
	if !b.opts.Sockets {
		return "", nil
	}
	random, err := randomHex(8)
	if err != nil {
		return "", nil
	}
	if abstractSockets {
		name := "@ebb-replica-" + id
		if n := maxSocketName - len(random) - 1; len(name) > n {
			name = name[:n]
		}
		name += "-" + random
		if f := listenUnix(ctx, name); f != nil {
			return name, f
		}
	}
	dir := b.opts.SocketDir
	if dir == "" || os.MkdirAll(dir, 0o700) != nil || os.Chmod(dir, 0o700) != nil {
		return "", nil
	}
	if name := filepath.Join(dir, random+".sock"); len(name) <= maxSocketName {
		if f := listenUnix(ctx, name); f != nil {
			return name, f
		}
	}
	return "", nil
}

// listenUnix listens on the Unix socket name and returns a file of it for
// the child, or nil.
func listenUnix(ctx context.Context, name string) *os.File {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", name)
	if err != nil {
		return nil
	}
	ul := ln.(*net.UnixListener)
	// The replica holds the socket; closing ebb's copy (right after the
	// start) must not remove its file.
	ul.SetUnlinkOnClose(false)
	f, err := ul.File()
	ul.Close()
	if err != nil {
		if !strings.HasPrefix(name, "@") {
			os.Remove(name)
		}
		return nil
	}
	return f
}

// removeSocket removes the file of a socket that is a path in SocketDir
// (never another file a handle may name); an abstract socket went with its
// last holder.
func (b *Backend) removeSocket(name string) {
	if name != "" && !strings.HasPrefix(name, "@") && b.opts.SocketDir != "" && filepath.Dir(name) == b.opts.SocketDir {
		os.Remove(name)
	}
}

// randomHex returns n random bytes, hex.
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
