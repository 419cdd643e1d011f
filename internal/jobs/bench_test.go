package jobs

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/server/servertest"
	"github.com/ebb-ml/ebb/internal/serving"
)

// replicaPredictor sends chunks to a replica server in process, as a
// gateway would: the runner's side of a job, and the replica's, without
// the network between.
type replicaPredictor struct{ srv *server.Server }

func (p replicaPredictor) Infer(ctx context.Context, _ string, req Message) (Message, error) {
	res := servertest.Queued(ctx, p.srv, "m", &queue.Request{Body: req.Body, HeaderLength: int64(req.HeaderLength), ContentType: "application/octet-stream"})
	if res.Status != 200 {
		return Message{}, fmt.Errorf("answered %d: %s", res.Status, res.Body)
	}
	return Message{Body: res.Body, HeaderLength: int(res.HeaderLength)}, nil
}

// BenchmarkRunDiabetes runs the jobs benchmark's tree job (bench/
// scenarios/jobs.go): the diabetes patients repeated to 100,000 rows,
// scored by the diabetes model in chunks of 1,000, to a CSV output. One
// op is one whole job: input read, requests, parts log, checkpoints in
// SQLite, output.
func BenchmarkRunDiabetes(b *testing.B) {
	const rows = 100_000
	root := filepath.Join("..", "..")
	data, err := os.ReadFile(filepath.Join(root, "examples", "jobs", "diabetes.csv"))
	if err != nil {
		b.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	dir := b.TempDir()
	in := filepath.Join(dir, "in.csv")
	f, err := os.Create(in)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString(lines[0] + "\n")
	for i := range rows {
		_, rest, _ := strings.Cut(lines[1+i%(len(lines)-1)], ",")
		fmt.Fprintf(w, "r%06d,%s\n", i, rest)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	m, err := trees.Load(filepath.Join(root, "examples", "diabetes", "model.json"))
	if err != nil {
		b.Fatal(err)
	}
	pred := replicaPredictor{srv: server.New("m", m, server.Options{})}
	st := openStore(b, dir)
	opts := Options{ProbeChunks: 3, StatusEvery: time.Second}
	b.ResetTimer()
	for i := range b.N {
		j := testJob(fmt.Sprintf("bench-%d", i), in, filepath.Join(dir, fmt.Sprintf("out-%d.csv", i)))
		j.Spec.Input.Columns = []serving.TensorColumns{{Tensor: "input", Columns: []string{"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}}}
		j.Spec.Input.IDColumn = "patient"
		j.Spec.ChunkRows = 1000
		j.Spec.Lease.MaxReplicas = 1
		if _, err := st.CreateJob(context.Background(), j); err != nil {
			b.Fatal(err)
		}
		if err := NewRunner(j.Name, st, pred, &fakeScaler{}, &Storage{}, opts).Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		got, _ := st.GetJob(context.Background(), j.Name)
		if got.Status.Phase != serving.JobSucceeded || got.Status.RowsDone != rows {
			b.Fatalf("job %s (%s), %d rows", got.Status.Phase, got.Status.Message, got.Status.RowsDone)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}
