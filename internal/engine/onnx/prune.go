package onnx

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// ONNX Runtime runs every node of a session's graph on each run, whatever
// outputs the run fetches: its RunOptions.only_execute_path_to_fetches works
// in training builds only (microsoft/onnxruntime#16013, #27615), and
// TestSubsetSkipsOtherBranches shows it for the release ebb uses. So that a
// request naming some outputs computes only those (issue 11), ebb gives ONNX
// Runtime a pruned copy of the model: the same ModelProto whose graph keeps
// only those outputs and the nodes and initializers they need.
//
// graphIndex reads once where each field of the graph lies in the file and
// what the nodes read and write, seeking past the weights; prune picks the
// fields a set of outputs needs; build copies them, byte for byte, into a
// new ModelProto. A node needs the values its inputs name and, for If, Loop
// and Scan, every value named inside its subgraphs (their implicit inputs
// from the outer graph): names the subgraphs define themselves are counted
// too, which can keep a node more, never one too few.

// Field numbers of onnx.proto, besides those of graph.go.
const (
	graphNode        = 1
	graphInitializer = 5
	graphValueInfo   = 13
	nodeInput        = 1
	nodeOutput       = 2
	nodeAttribute    = 5
	attributeGraph   = 6
	attributeGraphs  = 11
	tensorName       = 8
)

const (
	// maxNameBytes bounds a value name read into memory.
	maxNameBytes = 1 << 20
	// maxGraphDepth bounds how deeply subgraphs nest.
	maxGraphDepth = 64
)

var errMalformed = errors.New("malformed model: a field runs past the end of its message")

// span is the bytes [off, end) of the model file.
type span struct{ off, end int64 }

type itemKind uint8

const (
	itemKept        itemKind = iota // copied whatever the outputs
	itemNode                        // kept when an output needs it
	itemInitializer                 // kept when a kept node or output reads it
	itemOutput                      // kept when requested
	itemValueInfo                   // kept when its value is
)

// graphItem is one field of the GraphProto.
type graphItem struct {
	kind itemKind
	span span   // the whole field: tag, length and value
	name string // of an initializer, output or value info
	node int    // index in graphIndex.nodes of a node
}

// nodeRefs are the values a node reads (subgraphs included) and writes.
type nodeRefs struct {
	inputs, outputs []string
}

// graphIndex locates the fields of a model file's graph.
type graphIndex struct {
	// size and modTime identify the file indexed: build refuses another.
	size    int64
	modTime time.Time
	// graph is the ModelProto's graph field, tag and length included.
	graph    span
	items    []graphItem
	nodes    []nodeRefs
	inputs   map[string]bool // the graph's inputs
	producer map[string]int  // value name → index of the node writing it
}

// indexGraph reads the graph of the ONNX model at path. An error means the
// file is not a ModelProto this reader understands: the model then runs
// unpruned.
func indexGraph(path string) (*graphIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r := &protoReader{f: f, br: bufio.NewReaderSize(f, 64<<10), size: st.Size()}
	g := &graphIndex{size: st.Size(), modTime: st.ModTime(), inputs: map[string]bool{}, producer: map[string]int{}}
	found := false
	for r.off < r.size {
		start := r.off
		num, typ, err := r.tag()
		if err != nil {
			return nil, err
		}
		if num != modelGraph || typ != protowire.BytesType {
			if err := r.skip(typ); err != nil {
				return nil, err
			}
			continue
		}
		if found {
			return nil, errors.New("the model has more than one graph field")
		}
		found = true
		n, err := r.varint()
		if err != nil {
			return nil, err
		}
		if n > uint64(r.size-r.off) {
			return nil, errors.New("malformed model: the graph runs past the end of the file")
		}
		end := r.off + int64(n)
		if err := g.read(r, end); err != nil {
			return nil, err
		}
		g.graph = span{start, end}
	}
	if r.off != r.size {
		return nil, errors.New("malformed model: the last field runs past the end of the file")
	}
	if !found {
		return nil, errors.New("the model has no graph")
	}
	return g, nil
}

// read reads the GraphProto fields up to end.
func (g *graphIndex) read(r *protoReader, end int64) error {
	for r.off < end {
		start := r.off
		num, typ, err := r.tag()
		if err != nil {
			return err
		}
		item := graphItem{kind: itemKept}
		if typ != protowire.BytesType {
			if err := r.skip(typ); err != nil {
				return err
			}
		} else {
			l, err := r.varint()
			if err != nil {
				return err
			}
			if r.off > end || l > uint64(end-r.off) {
				return errMalformed
			}
			vend := r.off + int64(l)
			switch num {
			case graphNode:
				var n nodeRefs
				if err := r.node(vend, &n, 0); err != nil {
					return err
				}
				item.kind, item.node = itemNode, len(g.nodes)
				for _, o := range n.outputs {
					if o != "" {
						g.producer[o] = len(g.nodes)
					}
				}
				n.inputs = dedupe(n.inputs)
				g.nodes = append(g.nodes, n)
			case graphInitializer:
				item.kind = itemInitializer
				item.name, err = r.nameField(vend, tensorName)
			case graphOutput:
				item.kind = itemOutput
				item.name, err = r.nameField(vend, valueInfoName)
			case graphValueInfo:
				item.kind = itemValueInfo
				item.name, err = r.nameField(vend, valueInfoName)
			case graphInput:
				var name string
				name, err = r.nameField(vend, valueInfoName)
				g.inputs[name] = true
			}
			if err != nil {
				return err
			}
			if r.off > vend {
				return errMalformed
			}
			if err := r.discard(vend - r.off); err != nil {
				return err
			}
		}
		item.span = span{start, r.off}
		g.items = append(g.items, item)
	}
	if r.off != end {
		return errMalformed
	}
	return nil
}

// message calls f for each length-delimited field of the message that ends
// at end, with the field's number and the end of its value. f reads what it
// wants of the value; the rest is discarded. Other fields are skipped.
func (r *protoReader) message(end int64, f func(num protowire.Number, vend int64) error) error {
	for r.off < end {
		num, typ, err := r.tag()
		if err != nil {
			return err
		}
		if typ != protowire.BytesType {
			if err := r.skip(typ); err != nil {
				return err
			}
			continue
		}
		l, err := r.varint()
		if err != nil {
			return err
		}
		if r.off > end || l > uint64(end-r.off) {
			return errMalformed
		}
		vend := r.off + int64(l)
		if err := f(num, vend); err != nil {
			return err
		}
		if r.off > vend {
			return errMalformed
		}
		if err := r.discard(vend - r.off); err != nil {
			return err
		}
	}
	if r.off != end {
		return errMalformed
	}
	return nil
}

// str reads the rest of a value ending at end as a string.
func (r *protoReader) str(end int64) (string, error) {
	n := end - r.off
	if n < 0 {
		return "", errMalformed
	}
	if n > maxNameBytes {
		return "", fmt.Errorf("a name of %d bytes, more than ebb reads (%d)", n, maxNameBytes)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.br, b); err != nil {
		return "", err
	}
	r.off = end
	return string(b), nil
}

// nameField reads the string field num of the message ending at end (the
// last one when it repeats).
func (r *protoReader) nameField(end int64, field protowire.Number) (string, error) {
	var name string
	err := r.message(end, func(num protowire.Number, vend int64) error {
		if num != field {
			return nil
		}
		var err error
		name, err = r.str(vend)
		return err
	})
	return name, err
}

// node reads the NodeProto ending at end into n: its inputs and outputs
// and, as inputs, the values named in its subgraphs at any depth.
func (r *protoReader) node(end int64, n *nodeRefs, depth int) error {
	return r.message(end, func(num protowire.Number, vend int64) error {
		switch num {
		case nodeInput:
			s, err := r.str(vend)
			n.inputs = append(n.inputs, s)
			return err
		case nodeOutput:
			if depth > 0 {
				return nil
			}
			s, err := r.str(vend)
			n.outputs = append(n.outputs, s)
			return err
		case nodeAttribute:
			return r.message(vend, func(num protowire.Number, vend int64) error {
				if num != attributeGraph && num != attributeGraphs {
					return nil
				}
				if depth >= maxGraphDepth {
					return fmt.Errorf("subgraphs nest more than %d deep", maxGraphDepth)
				}
				return r.subgraph(vend, n, depth+1)
			})
		}
		return nil
	})
}

// subgraph reads the values a subgraph ending at end names: its nodes'
// inputs and its outputs, which may be values of the outer graph.
func (r *protoReader) subgraph(end int64, n *nodeRefs, depth int) error {
	return r.message(end, func(num protowire.Number, vend int64) error {
		switch num {
		case graphNode:
			return r.node(vend, n, depth)
		case graphOutput:
			s, err := r.nameField(vend, valueInfoName)
			n.inputs = append(n.inputs, s)
			return err
		}
		return nil
	})
}

func dedupe(names []string) []string {
	seen := make(map[string]bool, len(names))
	out := names[:0]
	for _, s := range names {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// prunePlan is the graph of a pruned model.
type prunePlan struct {
	// spans are the graph fields kept, in the file's order, adjacent ones
	// merged.
	spans    []span
	graphLen int64
	// removed says whether a node or initializer is left out: if not, the
	// pruned model computes what the whole one does.
	removed bool
	// size is the pruned ModelProto's length in bytes.
	size int64
}

// prune plans the model whose graph has only the outputs named and the
// nodes and initializers they need.
func (g *graphIndex) prune(outputs []string) prunePlan {
	needed := make(map[string]bool, len(outputs))
	stack := make([]string, 0, len(outputs))
	for _, o := range outputs {
		if !needed[o] {
			needed[o] = true
			stack = append(stack, o)
		}
	}
	keep := make([]bool, len(g.nodes))
	for len(stack) > 0 {
		name := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		p, ok := g.producer[name]
		if !ok || keep[p] {
			continue
		}
		keep[p] = true
		for _, in := range g.nodes[p].inputs {
			if !needed[in] {
				needed[in] = true
				stack = append(stack, in)
			}
		}
	}
	requested := make(map[string]bool, len(outputs))
	for _, o := range outputs {
		requested[o] = true
	}
	var p prunePlan
	for _, it := range g.items {
		var kept bool
		switch it.kind {
		case itemKept:
			kept = true
		case itemNode:
			kept = keep[it.node]
			p.removed = p.removed || !kept
		case itemInitializer:
			kept = needed[it.name] || g.inputs[it.name]
			p.removed = p.removed || !kept
		case itemOutput:
			kept = requested[it.name]
		case itemValueInfo:
			kept = needed[it.name]
		}
		if !kept {
			continue
		}
		if n := len(p.spans); n > 0 && p.spans[n-1].end == it.span.off {
			p.spans[n-1].end = it.span.end
		} else {
			p.spans = append(p.spans, it.span)
		}
		p.graphLen += it.span.end - it.span.off
	}
	p.size = g.graph.off + int64(protowire.SizeTag(modelGraph)+protowire.SizeVarint(uint64(p.graphLen))) + p.graphLen + (g.size - g.graph.end)
	return p
}

// build reads the pruned model p of the file at path, which must still be
// the file g indexed.
func (g *graphIndex) build(path string, p prunePlan) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() != g.size || !st.ModTime().Equal(g.modTime) {
		return nil, errors.New("the model file changed after it was loaded")
	}
	out := make([]byte, 0, p.size)
	read := func(s span) error {
		n := len(out)
		out = out[:n+int(s.end-s.off)]
		_, err := f.ReadAt(out[n:], s.off)
		return err
	}
	if err := read(span{0, g.graph.off}); err != nil {
		return nil, err
	}
	out = protowire.AppendTag(out, modelGraph, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(p.graphLen))
	for _, s := range p.spans {
		if err := read(s); err != nil {
			return nil, err
		}
	}
	if err := read(span{g.graph.end, g.size}); err != nil {
		return nil, err
	}
	return out, nil
}
