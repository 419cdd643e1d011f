package process

// SetAbstractSockets turns abstract socket names on or off until the
// returned function restores them; not for parallel tests.
func SetAbstractSockets(on bool) (restore func()) {
	old := abstractSockets
	abstractSockets = on
	return func() { abstractSockets = old }
}
