//go:build cgo

package onnx

import (
	"fmt"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

func inputError(format string, args ...any) error {
	return &engine.InputError{Message: fmt.Sprintf(format, args...)}
}

// prepare checks t against spec (rank and fixed dimensions unless spec
// declares no shape, element count, datatype) and returns it with Data of
// spec's datatype, converting numbers when the client sent another numeric
// datatype.
func prepare(spec tensorSpec, t oip.Tensor) (oip.Tensor, error) {
	if spec.shape != nil && !shapeMatches(spec.shape, t.Shape) {
		return t, inputError("input %q: shape %v given, model expects %v (-1 is any size)", spec.name, t.Shape, spec.shape)
	}
	n, err := oip.Elements(t.Shape)
	if err != nil {
		return t, inputError("input %q: %v", spec.name, err)
	}
	got, ok := oip.DataLen(t.Data)
	if !ok {
		return t, inputError("input %q: data of type %T is not a tensor", spec.name, t.Data)
	}
	if got != n {
		return t, inputError("input %q: shape %v holds %d elements but data has %d", spec.name, t.Shape, n, got)
	}
	given, _ := oip.DatatypeOf(t.Data)
	if given == spec.datatype {
		return oip.Tensor{Name: spec.name, Datatype: spec.datatype, Shape: t.Shape, Data: t.Data}, nil
	}
	if !oip.IsNumeric(spec.datatype) || !oip.IsNumeric(given) {
		return t, inputError("input %q: datatype %s given, model expects %s", spec.name, given, spec.datatype)
	}
	data, err := convertData(t.Data, spec.datatype)
	if err != nil {
		return t, inputError("input %q: %s data for a %s input: %v", spec.name, given, spec.datatype, err)
	}
	return oip.Tensor{Name: spec.name, Datatype: spec.datatype, Shape: t.Shape, Data: data}, nil
}

// shapeMatches reports whether given has want's rank and agrees on every
// fixed (non -1) dimension.
func shapeMatches(want, given []int64) bool {
	if len(want) != len(given) {
		return false
	}
	for i, d := range want {
		if d >= 0 && given[i] != d {
			return false
		}
	}
	return true
}
