package onnx

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// graphParts lists what an indexed graph holds: the values its nodes
// write, its initializers and its outputs.
type graphParts struct {
	Nodes, Initializers, Outputs []string
}

func parts(g *graphIndex) graphParts {
	var p graphParts
	for _, it := range g.items {
		switch it.kind {
		case itemNode:
			p.Nodes = append(p.Nodes, g.nodes[it.node].outputs...)
		case itemInitializer:
			p.Initializers = append(p.Initializers, it.name)
		case itemOutput:
			p.Outputs = append(p.Outputs, it.name)
		}
	}
	return p
}

// pruneFile prunes the model at path to outputs and indexes the result,
// written to a temporary file.
func pruneFile(t *testing.T, path string, outputs []string) (prunePlan, *graphIndex, []byte) {
	t.Helper()
	g, err := indexGraph(path)
	if err != nil {
		t.Fatalf("indexGraph(%s): %v", path, err)
	}
	plan := g.prune(outputs)
	b, err := g.build(path, plan)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if int64(len(b)) != plan.size {
		t.Errorf("built %d bytes, planned %d", len(b), plan.size)
	}
	out := filepath.Join(t.TempDir(), "pruned.onnx")
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	pg, err := indexGraph(out)
	if err != nil {
		t.Fatalf("indexGraph(pruned model): %v", err)
	}
	return plan, pg, b
}

func TestPrune(t *testing.T) {
	tests := []struct {
		model   string
		outputs []string
		want    graphParts
		removed bool
	}{
		{"branches", []string{"plus"}, graphParts{[]string{"doubled", "plus"}, []string{"one", "two"}, []string{"plus"}}, true},
		// via_if's If reads tripled only inside its branches.
		{"branches", []string{"via_if"}, graphParts{[]string{"tripled", "via_if"}, []string{"three", "yes"}, []string{"via_if"}}, true},
		{"branches", []string{"bad"}, graphParts{[]string{"x_shape", "bad_shape", "bad"}, []string{"seven"}, []string{"bad"}}, true},
		{"branches", []string{"via_if", "plus"},
			graphParts{[]string{"doubled", "plus", "tripled", "via_if"}, []string{"one", "two", "three", "yes"}, []string{"plus", "via_if"}}, true},
		{"branches", []string{"plus", "via_if", "bad"},
			graphParts{[]string{"doubled", "plus", "tripled", "via_if", "x_shape", "bad_shape", "bad"},
				[]string{"one", "two", "three", "seven", "yes"}, []string{"plus", "via_if", "bad"}}, false},
		// An output that is a graph input needs no node.
		{"outputs", []string{"ok"}, graphParts{[]string{"ok"}, nil, []string{"ok"}}, true},
		{"no_inputs", []string{"seq"}, graphParts{[]string{"seq"}, nil, []string{"seq"}}, true},
		// The weight in external data stays an initializer (its bytes are
		// in the other file).
		{"external", []string{"y"}, graphParts{[]string{"y"}, []string{"w"}, []string{"y"}}, true},
	}
	for _, tt := range tests {
		plan, pg, b := pruneFile(t, goldenModel(tt.model), tt.outputs)
		if diff := cmp.Diff(tt.want, parts(pg)); diff != "" {
			t.Errorf("%s pruned to %v (-want +got):\n%s", tt.model, tt.outputs, diff)
		}
		if plan.removed != tt.removed {
			t.Errorf("%s pruned to %v: removed = %v, want %v", tt.model, tt.outputs, plan.removed, tt.removed)
		}
		// The fields outside the graph are copied as they are.
		orig, err := os.ReadFile(goldenModel(tt.model))
		if err != nil {
			t.Fatal(err)
		}
		g, _ := indexGraph(goldenModel(tt.model))
		if !bytes.Equal(orig[:g.graph.off], b[:pg.graph.off]) || !bytes.Equal(orig[g.graph.end:], b[pg.graph.end:]) {
			t.Errorf("%s pruned to %v: the fields outside the graph changed", tt.model, tt.outputs)
		}
		// Pruning the pruned model to the same outputs removes nothing.
		if again := pg.prune(tt.outputs); again.removed {
			t.Errorf("%s pruned to %v twice: the second removed more", tt.model, tt.outputs)
		}
	}
}

func TestPruneKeepsDeclaredShapes(t *testing.T) {
	_, _, b := pruneFile(t, goldenModel("any_shape"), []string{"n"})
	path := filepath.Join(t.TempDir(), "pruned.onnx")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := declaredShapes(path)
	if err != nil {
		t.Fatal(err)
	}
	want := shapes{map[string]bool{"x": false}, map[string]bool{"n": true}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(shapes{})); diff != "" {
		t.Errorf("declaredShapes of the pruned model (-want +got):\n%s", diff)
	}
}

func TestBuildRefusesChangedFile(t *testing.T) {
	b, err := os.ReadFile(goldenModel("outputs"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := indexGraph(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, 0x08, 0x01), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := g.build(path, g.prune([]string{"ok"})); err == nil {
		t.Error("build of a file changed since it was indexed succeeded")
	}
}

func TestIndexGraphRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "no graph"},
		{"no graph", []byte{0x08, 0x08}, "no graph"}, // ir_version 8
		{"graph too long", []byte{0x3a, 0x10, 0x0a}, "the graph runs past the end of the file"},
		{"two graphs", []byte{0x3a, 0x00, 0x3a, 0x00}, "more than one graph"},
		{"node past graph", []byte{0x3a, 0x02, 0x0a, 0x05}, "runs past the end of its message"},
		{"truncated varint", []byte{0x08, 0x80}, "EOF"},
		{"group", []byte{0x3a, 0x02, 0x0b, 0x0c}, "unsupported wire type 3"},
		{"deep nesting", deeplyNested(maxGraphDepth + 1), "nest more than 64 deep"},
	} {
		path := filepath.Join(t.TempDir(), "m.onnx")
		if err := os.WriteFile(path, tt.b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := indexGraph(path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: indexGraph error = %v, want one saying %q", tt.name, err, tt.want)
		}
	}
}

// deeplyNested returns a ModelProto whose graph has a node whose attribute
// holds a graph with such a node, depth times.
func deeplyNested(depth int) []byte {
	var graph []byte
	for range depth {
		attr := appendBytes(nil, attributeGraph, graph)
		node := appendBytes(nil, nodeAttribute, attr)
		graph = appendBytes(nil, graphNode, node)
	}
	return appendBytes(nil, modelGraph, graph)
}

func appendBytes(b []byte, num int, v []byte) []byte {
	b = append(b, byte(num<<3|2))
	for n := uint64(len(v)); ; n >>= 7 {
		if n < 0x80 {
			b = append(b, byte(n))
			break
		}
		b = append(b, byte(n)|0x80)
	}
	return append(b, v...)
}

// FuzzPrune indexes arbitrary bytes as a model and prunes them to each of
// its outputs and to all of them. For any bytes it does not panic; a model
// it indexes prunes to a model it indexes again, with the outputs asked
// for, and pruning that to the same outputs removes nothing more.
func FuzzPrune(f *testing.F) {
	for _, name := range []string{"branches", "costly", "external", "datatypes", "scalars", "any_shape"} {
		b, err := os.ReadFile(goldenModel(name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(deeplyNested(3))
	f.Fuzz(func(t *testing.T, model []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "m.onnx")
		if err := os.WriteFile(path, model, 0o644); err != nil {
			t.Fatal(err)
		}
		g, err := indexGraph(path)
		if err != nil {
			return
		}
		var all []string
		for _, it := range g.items {
			if it.kind == itemOutput {
				all = append(all, it.name)
			}
		}
		sets := [][]string{all}
		for _, o := range all {
			sets = append(sets, []string{o})
		}
		for _, outs := range sets {
			plan := g.prune(outs)
			b, err := g.build(path, plan)
			if err != nil {
				t.Fatalf("build(%q): %v", outs, err)
			}
			if int64(len(b)) != plan.size {
				t.Fatalf("build(%q): %d bytes, planned %d", outs, len(b), plan.size)
			}
			out := filepath.Join(dir, "pruned.onnx")
			if err := os.WriteFile(out, b, 0o644); err != nil {
				t.Fatal(err)
			}
			pg, err := indexGraph(out)
			if err != nil {
				t.Fatalf("indexGraph of the model pruned to %q: %v", outs, err)
			}
			want := map[string]bool{}
			for _, o := range outs {
				want[o] = true
			}
			for _, it := range pg.items {
				if it.kind == itemOutput {
					if !want[it.name] {
						t.Fatalf("the model pruned to %q has output %q", outs, it.name)
					}
				}
			}
			if again := pg.prune(outs); again.removed {
				t.Fatalf("pruning the model pruned to %q again removed more", outs)
			}
		}
	})
}
