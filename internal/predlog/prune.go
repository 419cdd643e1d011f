package predlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// PruneParts bounds the completed parts a FileSink leaves in dir when
// nothing uploads them: it deletes the oldest while they total more than
// maxBytes, and returns how many parts, holding how many records, it
// deleted. Temporary parts (the one being written) are left alone. Call it
// when a part completes (FileOptions.OnPart); with an Uploader,
// UploaderOptions.MaxPendingBytes bounds the directory instead.
func PruneParts(dir string, maxBytes int64) (parts, records int, err error) {
	list, err := listParts(dir)
	if err != nil {
		return 0, 0, err
	}
	var total int64
	for _, p := range list {
		total += p.size
	}
	for _, p := range list {
		if total <= maxBytes {
			break
		}
		if err := os.Remove(filepath.Join(dir, p.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return parts, records, fmt.Errorf("prediction log: deleting an old part: %w", err)
		}
		total -= p.size
		parts++
		records += p.info.Records
	}
	return parts, records, nil
}
