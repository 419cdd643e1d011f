package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/registry"
)

// snapshot is what a watched listing shows now: a header and one row per
// object, the object's name first.
type snapshot struct {
	header []string
	rows   [][]string
	// volatile are the columns left out when rows are compared: ages,
	// which change by themselves.
	volatile []int
	// ageColumn is where a deleted object's row says "deleted".
	ageColumn int
	// models is the listing itself, for -o json and yaml of models.
	models []registry.Model
}

// snapshotFunc fetches a snapshot; errGone means the watched object does
// not exist (now).
type snapshotFunc func(ctx context.Context) (snapshot, error)

// errGone wraps a not-found error of a watched single object.
type errGone struct{ error }

func (e errGone) Unwrap() error { return e.error }

// watchFetchTimeout bounds one poll of a watch, beyond its interval.
const watchFetchTimeout = 10 * time.Second

// watch prints the snapshot as a table, then polls every interval and
// prints the row of every object that is new, changed (ignoring volatile
// columns) or gone (marked "deleted" in its age column), until ctx ends;
// then it returns nil. A failing poll is reported on errw once and retried;
// the first one fails the watch.
func watch(ctx context.Context, w, errw io.Writer, interval time.Duration, fetch snapshotFunc) error {
	poll := func() (snapshot, error) {
		ctx, cancel := context.WithTimeout(ctx, interval+watchFetchTimeout)
		defer cancel()
		return fetch(ctx)
	}
	s, err := poll()
	if err != nil {
		return err
	}
	p := &rowPrinter{w: w}
	p.fit(s.header)
	for _, r := range s.rows {
		p.fit(r)
	}
	if err := p.print(s.header); err != nil {
		return err
	}
	last := map[string][]string{}
	var order []string
	for _, r := range s.rows {
		last[r[0]] = r
		order = append(order, r[0])
		if err := p.print(r); err != nil {
			return err
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s, err := poll()
		var gone errGone
		if errors.As(err, &gone) {
			s.rows, err = nil, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if msg := err.Error(); msg != lastErr {
				fmt.Fprintf(errw, "warning: %v (retrying every %s)\n", err, interval)
				lastErr = msg
			}
			continue
		}
		lastErr = ""
		seen := map[string]bool{}
		for _, r := range s.rows {
			name := r[0]
			seen[name] = true
			if prev, ok := last[name]; ok && sameRow(prev, r, s.volatile) {
				continue
			}
			if _, ok := last[name]; !ok {
				order = append(order, name)
			}
			last[name] = r
			if err := p.print(r); err != nil {
				return err
			}
		}
		for _, name := range slices.Clone(order) {
			if seen[name] {
				continue
			}
			r := slices.Clone(last[name])
			if s.ageColumn < len(r) {
				r[s.ageColumn] = "deleted"
			}
			if err := p.print(r); err != nil {
				return err
			}
			delete(last, name)
			order = slices.DeleteFunc(order, func(n string) bool { return n == name })
		}
	}
}

// sameRow compares rows except their volatile columns.
func sameRow(a, b []string, volatile []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !slices.Contains(volatile, i) {
			return false
		}
	}
	return true
}

// rowPrinter prints rows one at a time in columns as wide as the widest
// cell seen so far, so that rows printed later line up with the table.
type rowPrinter struct {
	w      io.Writer
	widths []int
}

func (p *rowPrinter) fit(row []string) {
	for i, c := range row {
		if i >= len(p.widths) {
			p.widths = append(p.widths, 0)
		}
		p.widths[i] = max(p.widths[i], len([]rune(c)))
	}
}

func (p *rowPrinter) print(row []string) error {
	p.fit(row)
	var b strings.Builder
	for i, c := range row {
		b.WriteString(c)
		if i < len(row)-1 {
			b.WriteString(strings.Repeat(" ", p.widths[i]-len([]rune(c))+3))
		}
	}
	b.WriteByte('\n')
	_, err := io.WriteString(p.w, b.String())
	return err
}
