//go:build !linux

package cpusched

func batch() error { return nil }
