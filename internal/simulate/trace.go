package simulate

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Counts is a trace given as the arrivals of each second.
type Counts []int

// Seconds implements Trace.
func (c Counts) Seconds() int { return len(c) }

// Arrivals implements Trace.
func (c Counts) Arrivals(s int) int { return c[s] }

// MaxTraceSeconds bounds a trace: five weeks.
const MaxTraceSeconds = 35 * 24 * 3600

// ReadCSV reads a trace in the CSV format users export from their logs:
// one row per second that had requests, "SECOND,REQUESTS", SECOND counted
// from the trace's start (0, 1, ...); seconds without a row had none. A
// first row that is not numbers is a header, and # starts a comment.
func ReadCSV(r io.Reader) (Counts, error) {
	var out Counts
	sc := bufio.NewScanner(r)
	line, rows := 0, 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = strings.TrimSpace(text[:i])
		}
		if text == "" {
			continue
		}
		rows++
		sec, n, ok := strings.Cut(text, ",")
		s, err1 := strconv.Atoi(strings.TrimSpace(sec))
		c, err2 := strconv.Atoi(strings.TrimSpace(n))
		switch {
		case !ok:
			return nil, fmt.Errorf("trace line %d: %q is not SECOND,REQUESTS", line, text)
		case (err1 != nil || err2 != nil) && rows == 1:
			continue // a header
		case err1 != nil || err2 != nil || s < 0 || c < 0:
			return nil, fmt.Errorf("trace line %d: %q: give two whole numbers, SECOND (from 0) and REQUESTS, both 0 or more", line, text)
		case s >= MaxTraceSeconds:
			return nil, fmt.Errorf("trace line %d: second %d is past the longest trace, %d seconds (5 weeks)", line, s, MaxTraceSeconds)
		}
		for len(out) <= s {
			out = append(out, 0)
		}
		out[s] += c
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the trace: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the trace has no requests")
	}
	return out, nil
}

// WriteCSV writes c in ReadCSV's format.
func WriteCSV(w io.Writer, c Counts) error {
	if _, err := fmt.Fprintln(w, "second,requests"); err != nil {
		return err
	}
	for s, n := range c {
		if n == 0 {
			continue
		}
		if _, err := fmt.Fprintf(w, "%d,%d\n", s, n); err != nil {
			return err
		}
	}
	return nil
}

// BusinessHours is the on-demand half of the scenario of "Scaling Ray
// Serve 0:N": a week from Monday 00:00 in loc, with traffic on weekdays
// from 07:00 to 17:00 (50 hours) that rises to peak requests a second
// around 10:00 and 15:00 and dips at lunch, and otherwise a request every
// few minutes (someone working late). Arrivals are drawn with a fixed
// seed, so the trace is the same on every run.
func BusinessHours(peak float64, loc *time.Location, monday time.Time) Counts {
	const week = 7 * 24 * 3600
	out := make(Counts, week)
	seed := uint64(7)
	next := func() float64 { // xorshift, for a repeatable trace
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return float64(seed%1_000_000) / 1_000_000
	}
	for s := range week {
		t := monday.Add(time.Duration(s) * time.Second).In(loc)
		h := float64(t.Hour()) + float64(t.Minute())/60 + float64(t.Second())/3600
		weekday := t.Weekday() >= time.Monday && t.Weekday() <= time.Friday
		var rate float64
		switch {
		case weekday && h >= 7 && h < 17:
			// Two humps (10:00 and 15:00) and a lunch dip, from 20%
			// of the peak at the edges.
			x := (h - 7) / 10
			rate = peak * (0.2 + 0.8*math.Pow(math.Sin(math.Pi*x), 2)*(1-0.5*math.Exp(-math.Pow((h-12.5)/0.6, 2))))
		case weekday && (h >= 17 && h < 21 || h >= 6 && h < 7):
			rate = 1.0 / 300 // a request every 5 minutes
		}
		n := int(rate)
		if next() < rate-float64(n) {
			n++
		}
		out[s] = n
	}
	return out
}
