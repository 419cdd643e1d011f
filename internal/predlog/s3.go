package predlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"k8s.io/utils/clock"
)

// UploaderOptions configure an Uploader; zero values take the defaults.
type UploaderOptions struct {
	// Interval is how often Run looks for parts besides Notify's; default
	// 30s. A failed upload is retried at the next look.
	Interval time.Duration
	// MaxPendingBytes bounds the completed parts waiting in the directory
	// (S3 down, or slower than the log): beyond it the oldest are deleted
	// unsent and their records counted as dropped (reason
	// upload_backlog); default 1 GiB.
	MaxPendingBytes int64
	// KeepLocal keeps a part in the directory after its upload; by
	// default it is deleted.
	KeepLocal bool
	// Clock drives Run's looks; default the real clock.
	Clock clock.WithTicker
	// Metrics, when set, counts uploads, upload errors and backlog drops.
	Metrics *Metrics
	// Log receives upload errors; default slog.Default().
	Log *slog.Logger
}

// Uploader copies a FileSink's completed parts to S3, under
// <prefix>/dt=<UTC date of the part's start>/<part name>, and deletes
// them locally once uploaded. Parts left in the directory by an earlier
// run are uploaded too. It is safe for concurrent use; Run must run for
// anything to be uploaded.
type Uploader struct {
	client         *minio.Client
	bucket, prefix string
	dir            string
	opts           UploaderOptions
	wake           chan struct{}
}

// NewUploader returns an Uploader of dir's parts to location
// (s3://bucket or s3://bucket/prefix) through client. It makes no request.
func NewUploader(client *minio.Client, location, dir string, opts UploaderOptions) (*Uploader, error) {
	u, err := url.Parse(location)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("prediction log location %q is not s3://bucket[/prefix]", location)
	}
	if opts.Interval <= 0 {
		opts.Interval = 30 * time.Second
	}
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = 1 << 30
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Uploader{
		client: client,
		bucket: u.Host,
		prefix: strings.Trim(u.Path, "/"),
		dir:    dir,
		opts:   opts,
		wake:   make(chan struct{}, 1),
	}, nil
}

// Notify tells Run that a part is complete; it fits FileOptions.OnPart
// and never blocks.
func (u *Uploader) Notify(string, int) {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Run uploads parts when notified and every Interval until ctx ends; then
// it makes one last attempt, bounded by 30 seconds, so parts closed at
// shutdown are not left behind when S3 is up.
func (u *Uploader) Run(ctx context.Context) error {
	t := u.opts.Clock.NewTicker(u.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			return u.UploadPending(final)
		case <-u.wake:
		case <-t.C():
		}
		if err := u.UploadPending(ctx); err != nil && ctx.Err() == nil {
			u.opts.Log.Warn("prediction log: uploading parts failed; retrying later", "error", err)
		}
	}
}

// Key returns the object key of the part named name.
func (u *Uploader) Key(name string) string {
	info, _ := ParsePartName(name)
	k := "dt=" + info.Start.Format("2006-01-02") + "/" + name
	if u.prefix != "" {
		k = path.Join(u.prefix, k)
	}
	return k
}

// UploadPending uploads every completed part in the directory, oldest
// first, after trimming the backlog to MaxPendingBytes. It returns the
// errors of the parts it could not upload (they stay for the next try).
func (u *Uploader) UploadPending(ctx context.Context) error {
	parts, err := u.pending()
	if err != nil {
		return err
	}
	parts = u.trim(parts)
	var errs []error
	for _, p := range parts {
		if ctx.Err() != nil {
			return errors.Join(append(errs, ctx.Err())...)
		}
		ct := "application/x-ndjson"
		if p.info.Format == Parquet {
			ct = "application/vnd.apache.parquet"
		}
		_, err := u.client.FPutObject(ctx, u.bucket, u.Key(p.name), filepath.Join(u.dir, p.name), minio.PutObjectOptions{ContentType: ct})
		u.opts.Metrics.upload(err)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
			continue
		}
		if !u.opts.KeepLocal {
			if err := os.Remove(filepath.Join(u.dir, p.name)); err != nil {
				errs = append(errs, err)
			}
		} else {
			// Mark it sent so the next look does not send it again.
			if err := os.Rename(filepath.Join(u.dir, p.name), filepath.Join(u.dir, p.name+".sent")); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

type pendingPart struct {
	name string
	info PartInfo
	size int64
}

// pending lists the completed parts, oldest first.
func (u *Uploader) pending() ([]pendingPart, error) { return listParts(u.dir) }

// listParts lists the completed parts in dir, oldest first.
func listParts(dir string) ([]pendingPart, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("prediction log: %w", err)
	}
	var parts []pendingPart
	for _, e := range entries {
		info, ok := ParsePartName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		parts = append(parts, pendingPart{e.Name(), info, fi.Size()})
	}
	slices.SortFunc(parts, func(a, b pendingPart) int {
		if c := a.info.Start.Compare(b.info.Start); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	return parts, nil
}

// trim deletes the oldest parts while the backlog is over
// MaxPendingBytes, counting their records as dropped, and returns the
// rest.
func (u *Uploader) trim(parts []pendingPart) []pendingPart {
	var total int64
	for _, p := range parts {
		total += p.size
	}
	for len(parts) > 0 && total > u.opts.MaxPendingBytes {
		p := parts[0]
		if err := os.Remove(filepath.Join(u.dir, p.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			u.opts.Log.Warn("prediction log: deleting an unsent part failed", "part", p.name, "error", err)
			break
		}
		u.opts.Log.Warn("prediction log: upload backlog full; deleted the oldest part unsent", "part", p.name, "records", p.info.Records)
		u.opts.Metrics.droppedN(AllDeployments, ReasonUploadBacklog, p.info.Records)
		total -= p.size
		parts = parts[1:]
	}
	return parts
}
