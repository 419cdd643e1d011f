package trees_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/server/servertest"
)

// TestNumericDatatypesEveryProtocol sends the diabetes rows as every
// numeric datatype through every protocol of the replica server: each gives
// the FP32 answer; BOOL and BYTES are refused with a message naming the
// input and the datatype.
func TestNumericDatatypesEveryProtocol(t *testing.T) {
	m, err := trees.Parse("diabetes", diabetes.Model)
	if err != nil {
		t.Fatal(err)
	}
	// Small whole numbers survive every datatype, UINT8 and FP16 included.
	row := []float64{1, 0, 2, 3, 1, 0, 4, 2, 1, 3}
	f32 := make([]float32, len(row))
	for i, v := range row {
		f32[i] = float32(v)
	}
	shape := []int64{1, int64(len(row))}
	want, err := m.Predict(context.Background(), []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: shape, Data: f32}})
	if err != nil {
		t.Fatal(err)
	}
	c := servertest.Start(t, server.New("m", m, server.Options{Batching: server.BatchingPolicy(8, nil, 0)}))
	for _, dt := range oip.Datatypes {
		if !oip.IsNumeric(dt) {
			continue
		}
		in, err := asDatatype(dt, row, shape)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range servertest.Protocols {
			got, err := p.Infer(c, "m", []oip.Tensor{in}, nil)
			if err != nil {
				t.Errorf("%s over %s: %v", dt, p.Name, err)
				continue
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s over %s (-want +got):\n%s", dt, p.Name, diff)
			}
		}
	}
	for _, bad := range []oip.Tensor{
		{Name: "input", Datatype: oip.BOOL, Shape: shape, Data: make([]bool, len(row))},
		{Name: "input", Datatype: oip.BYTES, Shape: shape, Data: make([]string, len(row))},
	} {
		for _, p := range servertest.Protocols {
			_, err := p.Infer(c, "m", []oip.Tensor{bad}, nil)
			// REST quotes the message in JSON: look for the unquoted part.
			if err == nil || !strings.Contains(err.Error(), "input") || !strings.Contains(err.Error(), `: datatype `+bad.Datatype+` given, model expects FP32`) {
				t.Errorf("%s over %s: error = %v", bad.Datatype, p.Name, err)
			}
		}
	}
}

// asDatatype returns row as a tensor of datatype dt, through its raw form.
func asDatatype(dt string, row []float64, shape []int64) (oip.Tensor, error) {
	f := make([]float32, len(row))
	for i, v := range row {
		f[i] = float32(v)
	}
	var data any
	switch dt {
	case oip.FP16:
		h := make([]oip.Float16, len(row))
		for i, v := range f {
			h[i] = oip.Float16From(v)
		}
		data = h
	case oip.BF16:
		b := make([]oip.BFloat16, len(row))
		for i, v := range f {
			b[i] = oip.BFloat16From(v)
		}
		data = b
	case oip.FP32:
		data = f
	case oip.FP64:
		data = row
	default:
		// Whole numbers in range: write them as little-endian integers of
		// the datatype's size, which is the same for signed and unsigned.
		size := oip.ElementSize(dt)
		raw := make([]byte, 0, size*len(row))
		for _, v := range row {
			u := uint64(int64(v))
			for b := range size {
				raw = append(raw, byte(u>>(8*b)))
			}
		}
		t, err := oip.FromRaw(dt, shape, raw)
		t.Name = "input"
		return t, err
	}
	return oip.Tensor{Name: "input", Datatype: dt, Shape: shape, Data: data}, nil
}
