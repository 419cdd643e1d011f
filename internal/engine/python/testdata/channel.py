"""Checks worker.py's Channel.read against the ways frames can arrive:
python3 channel.py WORKER.py prints "ok", or fails with the first frame read
wrong. A writer thread sends frames of many sizes in pieces of a few bytes to
many frames, or all at once, and Channel reads them with buffers smaller and
larger than a frame, so that frames straddle the buffer's end and arrive in
parts."""

import importlib.util
import random
import socket
import sys
import threading

spec = importlib.util.spec_from_file_location("worker", sys.argv[1])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)

rng = random.Random(1)
bodies = [bytes(rng.randrange(256) for _ in range(n)) for n in (0, 1, 3, 4, 5, 7, 8, 13, 64, 100, 1000, 70000)]
frames = [rng.choice(bodies) for _ in range(200)]


def send(sock, whole):
    data = b"".join(worker.LENGTH.pack(len(b)) + b for b in frames)
    i = 0
    while i < len(data):
        n = len(data) if whole else rng.choice((1, 2, 3, 5, 9, 1000, 70000))
        sock.sendall(data[i:i + n])
        i += n
    sock.close()


for buffer in (5, 8, 16, 1000, 64 << 10):
    for whole in (False, True):
        a, b = socket.socketpair()
        t = threading.Thread(target=send, args=(a, whole), daemon=True)
        t.start()
        ch = worker.Channel(b.detach(), buffer)
        got = []
        for i, want in enumerate(frames):
            body = ch.read()
            if body != want:
                sys.exit("buffer %d, whole %s: frame %d is %d bytes %r..., want %d bytes %r..."
                         % (buffer, whole, i, -1 if body is None else len(body), (body or b"")[:8], len(want), want[:8]))
            got.append(body)
        if ch.read() is not None:
            sys.exit("buffer %d: a frame after the last one" % buffer)
        # Each body is a buffer of its own: reading on did not change it.
        if got != frames:
            sys.exit("buffer %d, whole %s: a frame changed after it was read" % (buffer, whole))
        t.join()
print("ok")
