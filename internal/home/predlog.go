package home

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/ebb-ml/ebb/internal/artifact/s3"
	"github.com/ebb-ml/ebb/internal/predlog"
)

// PredictionLogFlags configure the prediction log (package predlog) in
// both homes: ebb up, and each gateway of a cluster. Which deployments are
// logged, and how much of them, their specs say (spec.predictionLog,
// followed by Sampling); these flags say where records go and how much
// memory and disk they may take.
type PredictionLogFlags struct {
	// Dir holds the rotated parts; "" turns the log off.
	Dir string
	// Format is jsonl or parquet.
	Format string
	// S3, when set (s3://bucket[/prefix]), is where complete parts are
	// uploaded, and then deleted locally.
	S3 string
	// MaxBytes bounds the records queued in memory.
	MaxBytes int64
	// PartAge and PartBytes close a part by age and size.
	PartAge   time.Duration
	PartBytes int64
	// MaxDiskBytes bounds the complete parts kept in Dir: without S3 the
	// oldest are deleted beyond it; with S3 it bounds the parts waiting
	// for upload.
	MaxDiskBytes int64
}

// AddFlags adds the --prediction-log-* flags; dirHelp says what an empty
// --prediction-log-dir means in this home.
func (p *PredictionLogFlags) AddFlags(f *pflag.FlagSet, dirHelp string) {
	f.StringVar(&p.Dir, "prediction-log-dir", "", "directory of the prediction log: rotated parts of the sampled requests and answers of deployments with spec.predictionLog; "+dirHelp)
	f.StringVar(&p.Format, "prediction-log-format", string(predlog.JSONL), "format of the prediction log's parts: jsonl or parquet")
	f.StringVar(&p.S3, "prediction-log-s3", "", "s3://bucket[/prefix] to upload complete parts to (under dt=YYYY-MM-DD/), deleting them locally once sent; S3 settings from $EBB_S3_ENDPOINT, $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY, $AWS_REGION, as for --artifacts; default: no upload")
	f.Int64Var(&p.MaxBytes, "prediction-log-max-bytes", 64<<20, "most bytes of prediction records queued in memory for the log; records beyond it are dropped and counted (ebb_predlog_records_dropped_total{reason=\"queue_full\"}), never waited for")
	f.DurationVar(&p.PartAge, "prediction-log-part-age", 5*time.Minute, "a part of the prediction log is closed (and uploaded) this long after its first record")
	f.Int64Var(&p.PartBytes, "prediction-log-part-bytes", 64<<20, "a part of the prediction log is closed (and uploaded) once its records reach this many bytes")
	f.Int64Var(&p.MaxDiskBytes, "prediction-log-max-disk-bytes", 10<<30, "most bytes of complete parts kept in --prediction-log-dir: the oldest are deleted beyond it (with --prediction-log-s3, those not yet uploaded, and their records counted as dropped)")
}

// check says what is wrong with the flags, in their names.
func (p PredictionLogFlags) check() error {
	var errs []error
	switch predlog.Format(p.Format) {
	case predlog.JSONL, predlog.Parquet:
	default:
		errs = append(errs, fmt.Errorf("--prediction-log-format %q: use jsonl or parquet", p.Format))
	}
	if p.S3 != "" && !strings.HasPrefix(p.S3, "s3://") {
		errs = append(errs, fmt.Errorf("--prediction-log-s3 %q: give s3://bucket or s3://bucket/prefix", p.S3))
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"--prediction-log-max-bytes", p.MaxBytes}, {"--prediction-log-part-bytes", p.PartBytes}, {"--prediction-log-max-disk-bytes", p.MaxDiskBytes}} {
		if f.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", f.name, f.v))
		}
	}
	if p.PartAge <= 0 {
		errs = append(errs, fmt.Errorf("--prediction-log-part-age must be positive, got %s", p.PartAge))
	}
	return errors.Join(errs...)
}

// PredictionLog is a home's prediction log: a Logger the gateway hands
// sampled requests to (gateway.Options.Predictions), writing through a
// FileSink (and any extra sinks) into the directory, and an Uploader of
// complete parts when the flags name S3. Sampling sets its ratios from
// the deployments' specs. Run runs it.
type PredictionLog struct {
	// Logger is what the gateway logs to.
	Logger *predlog.Logger
	// Sampling keeps the Logger's ratios in line with the specs.
	Sampling *Sampling

	uploader *predlog.Uploader
	log      *slog.Logger
	dir      string
}

// Open returns the prediction log the flags describe, its metrics
// registered with reg: parts in the flags' directory, also handed to
// each of extra (the drift monitor's sink, say) through predlog.Tee. A nil
// log and no error: the directory is "" and the log is off. It starts
// nothing; call Run.
func (p PredictionLogFlags) Open(reg prometheus.Registerer, log *slog.Logger, extra ...predlog.Sink) (*PredictionLog, error) {
	if p.Dir == "" {
		return nil, nil
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	metrics := predlog.NewMetrics(reg, 0)
	l := &PredictionLog{log: log, dir: p.Dir}
	if p.S3 != "" {
		client, err := s3.NewClient(s3.Options{})
		if err != nil {
			return nil, fmt.Errorf("--prediction-log-s3: %w", err)
		}
		if l.uploader, err = predlog.NewUploader(client, p.S3, p.Dir, predlog.UploaderOptions{
			MaxPendingBytes: p.MaxDiskBytes, Metrics: metrics, Log: log,
		}); err != nil {
			return nil, fmt.Errorf("--prediction-log-s3: %w", err)
		}
	}
	onPart := func(string, int) {
		if parts, records, err := predlog.PruneParts(p.Dir, p.MaxDiskBytes); err != nil {
			log.Warn("prediction log: cannot prune old parts", "dir", p.Dir, "err", err)
		} else if parts > 0 {
			log.Warn("prediction log: deleted the oldest parts to stay within --prediction-log-max-disk-bytes", "parts", parts, "records", records, "maxBytes", p.MaxDiskBytes)
		}
	}
	if l.uploader != nil {
		onPart = l.uploader.Notify
	}
	fs, err := predlog.NewFileSink(predlog.FileOptions{
		Dir: p.Dir, Format: predlog.Format(p.Format), MaxPartBytes: p.PartBytes, MaxPartAge: p.PartAge, OnPart: onPart,
	})
	if err != nil {
		return nil, fmt.Errorf("--prediction-log-dir: %w", err)
	}
	l.Logger = predlog.New(predlog.Tee(append([]predlog.Sink{fs}, extra...)...), predlog.Options{
		MaxBytes: p.MaxBytes, Metrics: metrics, Log: log,
	})
	l.Sampling = NewSampling(l.Logger)
	return l, nil
}

// Run runs the log until ctx ends, then writes the records still queued,
// closes the last part and, with S3, uploads the parts left (within 30
// seconds), and returns. End ctx after the gateway has drained, so that
// the requests it finished are logged.
func (l *PredictionLog) Run(ctx context.Context) error {
	upDone := make(chan error, 1)
	upCtx, stopUp := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUp()
	if l.uploader != nil {
		go func() { upDone <- l.uploader.Run(upCtx) }()
	} else {
		upDone <- nil
	}
	l.log.Info("prediction log on", "dir", l.dir, "upload", l.uploader != nil)
	err := l.Logger.Run(ctx)
	// The last part is complete now: the uploader's last look sends it.
	stopUp()
	if upErr := <-upDone; upErr != nil {
		l.log.Warn("prediction log: parts left unsent at shutdown; they are sent at the next start", "dir", l.dir, "err", upErr)
	}
	return err
}
