package drift

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/monitor"
)

func TestReadSample(t *testing.T) {
	type feat struct {
		Name    string
		Kind    monitor.Kind
		Output  bool
		Count   int
		Missing int
	}
	tests := []struct {
		name    string
		data    string
		opts    SampleOptions
		want    []feat
		wantErr string
	}{
		{
			name: "csv kinds and outputs",
			data: "id,age,city,code,label\n1,30,paris,1,yes\n2,,lyon,2,no\n3,41.5,paris,1,yes\n",
			opts: SampleOptions{Format: FormatCSV, Outputs: []string{"label"}, Categorical: []string{"code"}, Ignore: []string{"id"}},
			want: []feat{
				{"age", monitor.Numeric, false, 2, 1},
				{"city", monitor.Categorical, false, 3, 0},
				{"code", monitor.Categorical, false, 3, 0},
				{"label", monitor.Categorical, true, 3, 0},
			},
		},
		{
			name: "jsonl columns in first-seen order",
			data: `{"b": 1, "a": "x"}` + "\n\n" + `{"a": "y", "c": true}` + "\n" + `{"b": null, "c": false}` + "\n",
			opts: SampleOptions{Format: FormatJSONL},
			want: []feat{
				{"b", monitor.Numeric, false, 1, 2},
				{"a", monitor.Categorical, false, 3, 0},
				{"c", monitor.Numeric, false, 2, 1},
			},
		},
		{name: "unknown column", data: "a\n1\n", opts: SampleOptions{Format: FormatCSV, Outputs: []string{"y"}}, wantErr: `no column "y"`},
		{name: "duplicate column", data: "a,a\n1,2\n", opts: SampleOptions{Format: FormatCSV}, wantErr: "twice"},
		{name: "no rows", data: "a,b\n", opts: SampleOptions{Format: FormatCSV}, wantErr: "no rows"},
		{name: "nested value", data: `{"a": [1, 2]}`, opts: SampleOptions{Format: FormatJSONL}, wantErr: "one column per feature"},
		{name: "unknown format", data: "", opts: SampleOptions{Format: "xls"}, wantErr: "unknown sample format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ReadSample(strings.NewReader(tt.data), tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadSample = %v; want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []feat
			for _, f := range p.Features {
				got = append(got, feat{f.Name, f.Kind, f.Output, f.Count, f.Missing})
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("features (-want +got):\n%s", diff)
			}
			if err := p.Validate(); err != nil {
				t.Errorf("profile does not validate: %v", err)
			}
		})
	}
}

func TestSampleFormat(t *testing.T) {
	for path, want := range map[string]string{"a.csv": FormatCSV, "b.JSONL": FormatJSONL, "c.ndjson": FormatJSONL, "d.parquet": ""} {
		if got := SampleFormat(path); got != want {
			t.Errorf("SampleFormat(%s) = %q; want %q", path, got, want)
		}
	}
}
