package gateway

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/ebb-ml/ebb/internal/oip"
)

// Gathering a split request's answer (scatter.go): the segments' outputs
// joined in row order, and the replicas that answered them.

// replicaList names the replicas that answered results, each once, in the
// order of the segments, at most maxListedReplicas of them.
func replicaList(results []segmentResult) string {
	var ids []string
	more := 0
	for _, res := range results {
		switch id := res.replica.ID; {
		case slices.Contains(ids, id):
		case len(ids) < maxListedReplicas:
			ids = append(ids, id)
		default:
			more++
		}
	}
	s := strings.Join(ids, ",")
	if more > 0 {
		s += fmt.Sprintf(",+%d more", more)
	}
	return s
}

// joinOutputs joins the outputs of the segments, in order: for each output
// of the first, the same output of every segment, its data concatenated
// along the first dimension.
func joinOutputs(results []segmentResult) ([]oip.Tensor, error) {
	first := results[0].resp.Outputs
	out := make([]oip.Tensor, len(first))
	for k, t := range first {
		if len(t.Shape) == 0 {
			return nil, fmt.Errorf("output %q of segment 0 is a scalar (shape []): it has no rows to join", t.Name)
		}
		rows, elems := int64(0), 0
		parts := make([]oip.Tensor, len(results))
		for i, res := range results {
			if len(res.resp.Outputs) != len(first) {
				return nil, fmt.Errorf("segment %d answered %d outputs, segment 0 %d", i, len(res.resp.Outputs), len(first))
			}
			j := slices.IndexFunc(res.resp.Outputs, func(o oip.Tensor) bool { return o.Name == t.Name })
			if j < 0 {
				return nil, fmt.Errorf("segment %d did not answer output %q", i, t.Name)
			}
			p := res.resp.Outputs[j]
			if p.Datatype != t.Datatype || len(p.Shape) != len(t.Shape) || !slices.Equal(p.Shape[1:], t.Shape[1:]) {
				return nil, fmt.Errorf("output %q is %s %s in segment %d but %s %s in segment 0",
					t.Name, p.Datatype, oip.FormatShape(p.Shape), i, t.Datatype, oip.FormatShape(t.Shape))
			}
			parts[i] = p
			rows += p.Shape[0]
			elems += reflect.ValueOf(p.Data).Len()
		}
		data := reflect.MakeSlice(reflect.TypeOf(t.Data), 0, elems)
		for _, p := range parts {
			data = reflect.AppendSlice(data, reflect.ValueOf(p.Data))
		}
		shape := slices.Clone(t.Shape)
		shape[0] = rows
		out[k] = oip.Tensor{Name: t.Name, Datatype: t.Datatype, Shape: shape, Data: data.Interface()}
	}
	return out, nil
}
