package rollout

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Signature is a version's input tensors, as its registry entry records
// them.
type Signature []oip.TensorMetadata

// compatible refuses a canary or a shadow (role) whose inputs differ from
// the primary's: a request the primary answers would fail on it. Versions
// given by path, or without a recorded signature, are not compared.
func (m *Manager) compatible(ctx context.Context, from, to, role string) error {
	if _, ok := serving.ParseModelRef(from); !ok {
		return nil
	}
	if _, ok := serving.ParseModelRef(to); !ok {
		return nil
	}
	a, okA, err := m.opts.Registry.Inputs(ctx, from)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, from, err)
	}
	b, okB, err := m.opts.Registry.Inputs(ctx, to)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, to, err)
	}
	if !okA || !okB {
		return nil
	}
	if diff := Diff(a, b); diff != "" {
		return fmt.Errorf("%w: %s takes other inputs than %s, so requests the primary answers would fail on the %s: %s", ErrInvalid, to, from, role, diff)
	}
	return nil
}

// Diff says how the inputs of b differ from a's: each tensor missing,
// added, or of another datatype or shape; "" when they are the same.
func Diff(a, b Signature) string {
	var out []string
	find := func(s Signature, name string) (oip.TensorMetadata, bool) {
		i := slices.IndexFunc(s, func(t oip.TensorMetadata) bool { return t.Name == name })
		if i < 0 {
			return oip.TensorMetadata{}, false
		}
		return s[i], true
	}
	for _, x := range a {
		y, ok := find(b, x.Name)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("input %q is missing", x.Name))
		case x.Datatype != y.Datatype:
			out = append(out, fmt.Sprintf("input %q is %s, not %s", x.Name, y.Datatype, x.Datatype))
		case !slices.Equal(x.Shape, y.Shape):
			out = append(out, fmt.Sprintf("input %q has shape %v, not %v", x.Name, y.Shape, x.Shape))
		}
	}
	for _, y := range b {
		if _, ok := find(a, y.Name); !ok {
			out = append(out, fmt.Sprintf("input %q is new", y.Name))
		}
	}
	return strings.Join(out, "; ")
}
