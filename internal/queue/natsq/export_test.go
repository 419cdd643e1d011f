package natsq

// SetBetweenReads sets betweenReads, for the external tests.
func SetBetweenReads(f func()) { betweenReads = f }
