package batch

import (
	"fmt"
	"slices"

	"github.com/ebb-ml/ebb/internal/oip"
)

// Concat joins tensors along dimension 0, the batch dimension. They must
// share a datatype, a rank of at least 1, and every dimension after the
// first; Data must be a flat slice of the Go type the datatype implies (see
// oip.Tensor) with as many elements as Shape describes. The result takes its
// name from parts[0] and owns freshly allocated Data; a single part is
// returned as it is.
func Concat(parts []oip.Tensor) (oip.Tensor, error) {
	if len(parts) == 0 {
		return oip.Tensor{}, fmt.Errorf("concat: no tensors")
	}
	first := parts[0]
	if len(first.Shape) == 0 {
		return oip.Tensor{}, fmt.Errorf("concat %q: a scalar has no batch dimension", first.Name)
	}
	var rows int64
	for _, p := range parts {
		if p.Datatype != first.Datatype {
			return oip.Tensor{}, fmt.Errorf("concat %q: datatype %s differs from %s", first.Name, p.Datatype, first.Datatype)
		}
		if len(p.Shape) != len(first.Shape) || !slices.Equal(p.Shape[1:], first.Shape[1:]) {
			return oip.Tensor{}, fmt.Errorf("concat %q: shape %v differs from %v after dimension 0", first.Name, p.Shape, first.Shape)
		}
		if err := checkLen(p); err != nil {
			return oip.Tensor{}, fmt.Errorf("concat: %w", err)
		}
		rows += p.Shape[0]
	}
	if len(parts) == 1 {
		return first, nil
	}
	out := oip.Tensor{Name: first.Name, Datatype: first.Datatype, Shape: slices.Clone(first.Shape)}
	out.Shape[0] = rows
	var ok bool
	switch first.Data.(type) {
	case []float32:
		out.Data, ok = concatAs[float32](parts)
	case []float64:
		out.Data, ok = concatAs[float64](parts)
	case []int32:
		out.Data, ok = concatAs[int32](parts)
	case []int64:
		out.Data, ok = concatAs[int64](parts)
	case []bool:
		out.Data, ok = concatAs[bool](parts)
	case []string:
		out.Data, ok = concatAs[string](parts)
	case []int8:
		out.Data, ok = concatAs[int8](parts)
	case []int16:
		out.Data, ok = concatAs[int16](parts)
	case []uint8:
		out.Data, ok = concatAs[uint8](parts)
	case []uint16:
		out.Data, ok = concatAs[uint16](parts)
	case []uint32:
		out.Data, ok = concatAs[uint32](parts)
	case []uint64:
		out.Data, ok = concatAs[uint64](parts)
	case []oip.Float16:
		out.Data, ok = concatAs[oip.Float16](parts)
	case []oip.BFloat16:
		out.Data, ok = concatAs[oip.BFloat16](parts)
	default:
		return oip.Tensor{}, fmt.Errorf("concat %q: unsupported data type %T", first.Name, first.Data)
	}
	if !ok {
		return oip.Tensor{}, fmt.Errorf("concat %q: parts hold different Go types of data", first.Name)
	}
	return out, nil
}

func concatAs[T any](parts []oip.Tensor) ([]T, bool) {
	n := 0
	for _, p := range parts {
		d, ok := p.Data.([]T)
		if !ok {
			return nil, false
		}
		n += len(d)
	}
	out := make([]T, 0, n)
	for _, p := range parts {
		out = append(out, p.Data.([]T)...)
	}
	return out, true
}

// Split cuts t along dimension 0 into len(rows) tensors of rows[i] rows
// each; the rows must add up to t.Shape[0]. The parts share t's Data (each
// with its capacity capped at its own end), so treat them as read-only.
func Split(t oip.Tensor, rows []int) ([]oip.Tensor, error) {
	if len(t.Shape) == 0 {
		return nil, fmt.Errorf("split %q: a scalar has no batch dimension", t.Name)
	}
	if err := checkLen(t); err != nil {
		return nil, fmt.Errorf("split: %w", err)
	}
	total := 0
	for _, r := range rows {
		if r < 0 {
			return nil, fmt.Errorf("split %q: negative row count %d", t.Name, r)
		}
		total += r
	}
	if int64(total) != t.Shape[0] {
		return nil, fmt.Errorf("split %q: shape %v has %d rows, want %d (dimension 0 must be the batch)", t.Name, t.Shape, t.Shape[0], total)
	}
	per := 1 // elements per row
	for _, d := range t.Shape[1:] {
		per *= int(d)
	}
	out := make([]oip.Tensor, len(rows))
	lo := 0
	for i, r := range rows {
		shape := slices.Clone(t.Shape)
		shape[0] = int64(r)
		hi := lo + r*per
		out[i] = oip.Tensor{Name: t.Name, Datatype: t.Datatype, Shape: shape, Data: sliceData(t.Data, lo, hi)}
		lo = hi
	}
	return out, nil
}

// sliceData returns data[lo:hi:hi]; data is one of the slice types
// checkLen accepts.
func sliceData(data any, lo, hi int) any {
	switch d := data.(type) {
	case []float32:
		return d[lo:hi:hi]
	case []float64:
		return d[lo:hi:hi]
	case []int32:
		return d[lo:hi:hi]
	case []int64:
		return d[lo:hi:hi]
	case []bool:
		return d[lo:hi:hi]
	case []string:
		return d[lo:hi:hi]
	case []int8:
		return d[lo:hi:hi]
	case []int16:
		return d[lo:hi:hi]
	case []uint8:
		return d[lo:hi:hi]
	case []uint16:
		return d[lo:hi:hi]
	case []uint32:
		return d[lo:hi:hi]
	case []uint64:
		return d[lo:hi:hi]
	case []oip.Float16:
		return d[lo:hi:hi]
	case []oip.BFloat16:
		return d[lo:hi:hi]
	}
	panic(fmt.Sprintf("batch: sliceData of %T", data))
}

// checkLen checks that t.Data is a flat slice of the Go type of t.Datatype
// (see oip.Tensor) holding as many elements as t.Shape describes.
func checkLen(t oip.Tensor) error {
	dt, ok := oip.DatatypeOf(t.Data)
	if !ok {
		return fmt.Errorf("tensor %q: unsupported data type %T: use the Go type of its datatype (%s for %s)", t.Name, t.Data, oip.GoType(t.Datatype), t.Datatype)
	}
	if dt != t.Datatype {
		return fmt.Errorf("tensor %q: data of type %T does not match datatype %s (%s)", t.Name, t.Data, t.Datatype, oip.GoType(t.Datatype))
	}
	n, _ := oip.DataLen(t.Data)
	want, err := oip.Elements(t.Shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if n != want {
		return fmt.Errorf("tensor %q: shape %v holds %d elements but data has %d", t.Name, t.Shape, want, n)
	}
	return nil
}
