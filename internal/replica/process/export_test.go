package process

import "github.com/ebb-ml/ebb/internal/replica"

// SetAbstractSockets turns abstract socket names on or off until the
// returned function restores them; not for parallel tests.
func SetAbstractSockets(on bool) (restore func()) {
	old := abstractSockets
	abstractSockets = on
	return func() { abstractSockets = old }
}

// AbandonGate closes h's gate without releasing it, as the kernel does
// when ebb dies before recording the replica.
func AbandonGate(b *Backend, h replica.Handle) {
	if p, err := b.lookup(h); err == nil {
		p.closeGate()
	}
}
