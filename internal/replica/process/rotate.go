package process

// Log rotation and pruning.
//
// A replica writes its output straight into <LogDir>/<id>.log, opened with
// O_APPEND, and keeps doing so while ebb restarts, so the file cannot be
// renamed under it. It is rotated by copy and truncate instead: <id>.log.N
// moves to .N+1 (the oldest beyond LogKeep is removed), <id>.log is copied
// to <id>.log.1, then truncated; the replica's next write lands at the new
// end. Output written between the copy and the truncation is lost; that
// window is one copy of LogMaxBytes.
//
// The logs of replicas that no longer run (neither started nor recovered by
// this Backend) are removed once they have not changed for LogRetention.
// planLogs decides both from a listing; MaintainLogs acts.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Defaults for the log options of `ebb up`.
const (
	DefaultLogMaxBytes  = 10 << 20
	DefaultLogKeep      = 3
	DefaultLogRetention = 7 * 24 * time.Hour
)

// logName matches the files of one replica's log: <id>.log and its
// rotations <id>.log.N. Replica IDs are "<deployment>-<6 chars>"; nothing
// else in LogDir is touched.
var logName = regexp.MustCompile(`^([a-z0-9]([a-z0-9.-]*[a-z0-9])?-[a-z0-9]{6})\.log(\.([1-9][0-9]*))?$`)

// logFile is one file of a replica's log.
type logFile struct {
	id      string
	n       int // 0: the current file; N: <id>.log.N
	size    int64
	modTime time.Time
}

// logPlan is what to do with LogDir.
type logPlan struct {
	rotate []string // ids whose current file is over the cap
	prune  []string // ids of replicas gone for the retention: remove all their files
}

// planLogs decides which logs to rotate and which to remove at now. A
// replica's log is rotated when its current file has reached maxBytes (0:
// never), and removed when live says the replica does not run and none of
// its files changed within retention (0: never).
func planLogs(files []logFile, live func(id string) bool, now time.Time, maxBytes int64, retention time.Duration) logPlan {
	type summary struct {
		size   int64
		latest time.Time
	}
	byID := map[string]*summary{}
	for _, f := range files {
		s := byID[f.id]
		if s == nil {
			s = &summary{}
			byID[f.id] = s
		}
		if f.n == 0 {
			s.size = f.size
		}
		if f.modTime.After(s.latest) {
			s.latest = f.modTime
		}
	}
	var p logPlan
	for id, s := range byID {
		switch {
		case live(id):
			if maxBytes > 0 && s.size >= maxBytes {
				p.rotate = append(p.rotate, id)
			}
		case retention > 0 && now.Sub(s.latest) >= retention:
			p.prune = append(p.prune, id)
		}
	}
	sort.Strings(p.rotate)
	sort.Strings(p.prune)
	return p
}

// listLogs lists the replica log files in dir.
func listLogs(dir string) ([]logFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []logFile
	for _, e := range ents {
		m := logName.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		f := logFile{id: m[1], size: info.Size(), modTime: info.ModTime()}
		if m[4] != "" {
			f.n, _ = strconv.Atoi(m[4])
		}
		files = append(files, f)
	}
	return files, nil
}

// MaintainLogs rotates the logs of the replicas this Backend runs that
// reached Options.LogMaxBytes, and removes the logs of replicas that ended
// more than Options.LogRetention ago. It does nothing to a LogDir left to
// its default.
func (b *Backend) MaintainLogs() error {
	if !b.ownLogDir {
		return nil
	}
	files, err := listLogs(b.opts.LogDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no replica has started yet: nothing to maintain
	}
	if err != nil {
		return fmt.Errorf("replica logs: %w", err)
	}
	plan := planLogs(files, b.has, b.opts.Clock.Now(), b.opts.LogMaxBytes, b.opts.LogRetention)
	var errs []string
	for _, id := range plan.rotate {
		if err := rotateLog(b.opts.LogDir, id, b.opts.LogKeep); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, id := range plan.prune {
		for _, f := range files {
			if f.id != id {
				continue
			}
			if err := os.Remove(filepath.Join(b.opts.LogDir, fileName(f))); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("replica logs: %s", strings.Join(errs, "; "))
	}
	return nil
}

// RunLogMaintenance calls MaintainLogs every period until ctx ends,
// reporting errors to onErr (which may be nil).
func (b *Backend) RunLogMaintenance(ctx context.Context, every time.Duration, onErr func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := b.MaintainLogs(); err != nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func fileName(f logFile) string {
	if f.n == 0 {
		return f.id + ".log"
	}
	return f.id + ".log." + strconv.Itoa(f.n)
}

// rotateLog shifts id's rotations up by one, keeping keep of them, copies
// the current file to .1 and truncates it.
func rotateLog(dir, id string, keep int) error {
	base := filepath.Join(dir, id+".log")
	keep = max(keep, 1)
	_ = os.Remove(base + "." + strconv.Itoa(keep))
	for n := keep - 1; n >= 1; n-- {
		if err := os.Rename(base+"."+strconv.Itoa(n), base+"."+strconv.Itoa(n+1)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate %s: %w", base, err)
		}
	}
	src, err := os.OpenFile(base, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("rotate %s: %w", base, err)
	}
	defer src.Close()
	dst, err := os.OpenFile(base+".1", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("rotate %s: %w", base, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("rotate %s: %w", base, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("rotate %s: %w", base, err)
	}
	if err := src.Truncate(0); err != nil {
		return fmt.Errorf("rotate %s: %w", base, err)
	}
	return nil
}
