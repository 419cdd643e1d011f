package engine

import (
	"fmt"
	"io"
	"os"
)

// MaxModelFileBytes bounds a model file an engine reads into memory: no
// engine reads a model without a size bound, so a path such as /dev/zero
// fails at once instead of filling the memory.
const MaxModelFileBytes = 20 << 30

// ReadModelFile reads the model file at path: a regular file of at most
// max bytes. A device, a pipe or a larger file is refused before a byte is
// read; the error never quotes the file's contents.
func ReadModelFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := CheckModelFile(f, max)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, info.Size()+1)
	// The size may have grown since the Stat: read at most one byte past
	// max to tell.
	b, err = readAll(io.LimitReader(f, max+1), b)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("the file is larger than the limit of %d bytes", max)
	}
	return b, nil
}

// CheckModelFile checks that f is a regular file of at most max bytes.
func CheckModelFile(f *os.File, max int64) (os.FileInfo, error) {
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case info.IsDir():
		return nil, fmt.Errorf("is a directory: give the path of the model file")
	case !info.Mode().IsRegular():
		return nil, fmt.Errorf("is not a regular file (mode %s): give the path of a model file", info.Mode().Type())
	case info.Size() > max:
		return nil, fmt.Errorf("the file has %d bytes, more than the limit of %d", info.Size(), max)
	}
	return info, nil
}

func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
