package predlog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"k8s.io/utils/clock"
)

// Format is a part's file format.
type Format string

// Formats.
const (
	// JSONL is one JSON object per line (JSONRecord).
	JSONL Format = "jsonl"
	// Parquet is one Parquet file per part (ParquetRecord rows).
	Parquet Format = "parquet"
)

var _ Sink = (*FileSink)(nil)

// FileOptions configure a FileSink; zero values take the defaults.
type FileOptions struct {
	// Dir holds the parts; it is created if missing. Required.
	Dir string
	// Format is JSONL (default) or Parquet.
	Format Format
	// MaxPartBytes closes a part once its records' Record.Size bytes
	// reach it; default 64 MiB.
	MaxPartBytes int64
	// MaxPartAge closes a part this long after its first record; default
	// 5 minutes.
	MaxPartAge time.Duration
	// RowGroupBytes bounds a Parquet part's buffered row group (the
	// memory a part holds): a row group is flushed once its records reach
	// it; default 8 MiB.
	RowGroupBytes int64
	// Clock names and ages parts; default the real clock.
	Clock clock.PassiveClock
	// OnPart is called with each completed part's path and record count,
	// after it is renamed into place (Uploader.Notify fits).
	OnPart func(path string, records int)
}

// FileSink writes records into parts in a directory. A part is written
// under a hidden temporary name and renamed, atomically, to
// predlog-<UTC start>-<instance>-<seq>-n<records>.<format> once it is complete
// (by size, by age, or at Close), so a reader or an uploader never sees a
// half-written part; a temporary part left by a crash keeps its hidden
// name and is never picked up. It is used from one goroutine (Logger.Run).
type FileSink struct {
	opts     FileOptions
	instance string // random per sink, so processes sharing a bucket never collide
	seq      int

	cur *part // nil between parts
}

// part is one open part.
type part struct {
	tmp     string
	opened  time.Time
	f       *os.File
	bw      *bufio.Writer                         // JSONL
	enc     *json.Encoder                         // JSONL
	pw      *parquet.GenericWriter[ParquetRecord] // Parquet
	rows    []ParquetRecord                       // Parquet: one-row scratch
	n       int
	bytes   int64
	grouped int64 // Parquet: bytes since the last row-group flush
}

// NewFileSink returns a sink writing into opts.Dir, which it creates.
func NewFileSink(opts FileOptions) (*FileSink, error) {
	if opts.Dir == "" {
		return nil, errors.New("prediction log: no directory")
	}
	switch opts.Format {
	case "":
		opts.Format = JSONL
	case JSONL, Parquet:
	default:
		return nil, fmt.Errorf("prediction log format %q: use jsonl or parquet", opts.Format)
	}
	if opts.MaxPartBytes <= 0 {
		opts.MaxPartBytes = 64 << 20
	}
	if opts.MaxPartAge <= 0 {
		opts.MaxPartAge = 5 * time.Minute
	}
	if opts.RowGroupBytes <= 0 {
		opts.RowGroupBytes = 8 << 20
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("prediction log: %w", err)
	}
	return &FileSink{opts: opts, instance: fmt.Sprintf("%08x", rand.Uint32())}, nil
}

// Write appends recs to the current part, rotating by size and age.
func (s *FileSink) Write(recs []Record) error {
	for i := range recs {
		if s.cur != nil && s.opts.Clock.Since(s.cur.opened) >= s.opts.MaxPartAge {
			if err := s.closePart(); err != nil {
				return err
			}
		}
		if s.cur == nil {
			if err := s.openPart(); err != nil {
				return err
			}
		}
		if err := s.cur.write(&recs[i], s.opts.RowGroupBytes); err != nil {
			return err
		}
		if s.cur.bytes >= s.opts.MaxPartBytes {
			if err := s.closePart(); err != nil {
				return err
			}
		}
	}
	if s.cur != nil && s.cur.bw != nil {
		return s.cur.bw.Flush() // JSONL lines reach the file as they come
	}
	return nil
}

// Tick closes the current part when it is MaxPartAge old.
func (s *FileSink) Tick(now time.Time) error {
	if s.cur != nil && now.Sub(s.cur.opened) >= s.opts.MaxPartAge {
		return s.closePart()
	}
	return nil
}

// Close closes the current part.
func (s *FileSink) Close() error {
	if s.cur == nil {
		return nil
	}
	return s.closePart()
}

func (s *FileSink) openPart() error {
	now := s.opts.Clock.Now().UTC()
	s.seq++
	tmp := filepath.Join(s.opts.Dir, fmt.Sprintf(".predlog-%s-%s-%06d.%s.tmp", now.Format(partTime), s.instance, s.seq, s.opts.Format))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("prediction log: %w", err)
	}
	p := &part{tmp: tmp, opened: now, f: f}
	if s.opts.Format == Parquet {
		p.pw = parquet.NewGenericWriter[ParquetRecord](f)
		p.rows = make([]ParquetRecord, 1)
	} else {
		p.bw = bufio.NewWriterSize(f, 64<<10)
		p.enc = json.NewEncoder(p.bw)
		p.enc.SetEscapeHTML(false)
	}
	s.cur = p
	return nil
}

// partTime is the UTC start time in part names; it sorts as time does.
const partTime = "20060102T150405.000Z"

// closePart completes the current part and renames it into place.
func (s *FileSink) closePart() error {
	p := s.cur
	s.cur = nil
	var err error
	if p.pw != nil {
		err = p.pw.Close()
	} else {
		err = p.bw.Flush()
	}
	err = errors.Join(err, p.f.Sync(), p.f.Close())
	if err != nil {
		_ = os.Remove(p.tmp)
		return fmt.Errorf("prediction log: closing part: %w", err)
	}
	base := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p.tmp), "."), "."+string(s.opts.Format)+".tmp")
	final := filepath.Join(s.opts.Dir, fmt.Sprintf("%s-n%d.%s", base, p.n, s.opts.Format))
	if err := os.Rename(p.tmp, final); err != nil {
		return fmt.Errorf("prediction log: %w", err)
	}
	if s.opts.OnPart != nil {
		s.opts.OnPart(final, p.n)
	}
	return nil
}

func (p *part) write(r *Record, rowGroupBytes int64) error {
	size := int64(r.Size())
	if p.pw != nil {
		p.rows[0] = toParquet(r)
		if _, err := p.pw.Write(p.rows); err != nil {
			return fmt.Errorf("prediction log: %w", err)
		}
		p.rows[0] = ParquetRecord{}
		if p.grouped += size; p.grouped >= rowGroupBytes {
			if err := p.pw.Flush(); err != nil {
				return fmt.Errorf("prediction log: %w", err)
			}
			p.grouped = 0
		}
	} else if err := p.enc.Encode(toJSON(r)); err != nil {
		return fmt.Errorf("prediction log: %w", err)
	}
	p.n++
	p.bytes += size
	return nil
}

// PartInfo is what a completed part's name says.
type PartInfo struct {
	Start    time.Time
	Instance string
	Seq      int
	Records  int
	Format   Format
}

// ParsePartName reads a completed part's file name; ok is false for any
// other file (temporary parts included).
func ParsePartName(name string) (info PartInfo, ok bool) {
	rest, found := strings.CutPrefix(name, "predlog-")
	if !found {
		return info, false
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 {
		return info, false
	}
	info.Format = Format(rest[dot+1:])
	if info.Format != JSONL && info.Format != Parquet {
		return info, false
	}
	fields := strings.Split(rest[:dot], "-")
	if len(fields) != 4 || !strings.HasPrefix(fields[3], "n") {
		return info, false
	}
	var err1, err2, err3 error
	info.Start, err1 = time.Parse(partTime, fields[0])
	info.Instance = fields[1]
	info.Seq, err2 = strconv.Atoi(fields[2])
	info.Records, err3 = strconv.Atoi(fields[3][1:])
	return info, err1 == nil && err2 == nil && err3 == nil
}
