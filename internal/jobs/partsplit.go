package jobs

import (
	"encoding/json"
)

// splitter splits the lines of a part (see part.go) into their raw JSON
// values, one per output column: the id, then each output's, an array's
// elements one by one. The lines encodePart writes are read without
// decoding them (split's fast path: the keys in the header's order, flat
// values); any other line valid JSON is decoded (flatten).
type splitter struct {
	h      partHeader
	keys   [][]byte // each key as encodePart writes it, with its colon: "row":
	widths []int    // per key: 0 for a scalar, else an array's length
}

func newSplitter(h partHeader) splitter {
	sp := splitter{h: h}
	key := func(name string) []byte {
		k, _ := json.Marshal(name)
		return append(k, ':')
	}
	sp.keys, sp.widths = append(sp.keys, key(h.ID)), append(sp.widths, 0)
	for _, o := range h.Outputs {
		w := 0
		if o.Width != 1 {
			w = o.Width
		}
		sp.keys, sp.widths = append(sp.keys, key(o.Name)), append(sp.widths, w)
	}
	return sp
}

// split returns l's values, appended to dst[:0].
func (sp *splitter) split(l []byte, dst []json.RawMessage) ([]json.RawMessage, error) {
	if out, ok := sp.fast(l, dst[:0]); ok {
		return out, nil
	}
	return flatten(sp.h, l, dst)
}

// fast splits a line of exactly the shape encodePart writes:
// {"id":v,"out":v,"wide":[v,v]} with the keys in order and every v a
// number, null, true, false or a string. It reports false for any other.
func (sp *splitter) fast(l []byte, dst []json.RawMessage) ([]json.RawMessage, bool) {
	if len(l) < 2 || l[0] != '{' {
		return dst, false
	}
	i := 1
	for k, key := range sp.keys {
		if k > 0 {
			if i >= len(l) || l[i] != ',' {
				return dst, false
			}
			i++
		}
		if len(l)-i < len(key) || string(l[i:i+len(key)]) != string(key) {
			return dst, false
		}
		i += len(key)
		w := sp.widths[k]
		if w == 0 {
			end, ok := scalarEnd(l, i)
			if !ok {
				return dst, false
			}
			dst, i = append(dst, l[i:end]), end
			continue
		}
		if i >= len(l) || l[i] != '[' {
			return dst, false
		}
		i++
		for e := range w {
			if e > 0 {
				if i >= len(l) || l[i] != ',' {
					return dst, false
				}
				i++
			}
			end, ok := scalarEnd(l, i)
			if !ok {
				return dst, false
			}
			dst, i = append(dst, l[i:end]), end
		}
		if i >= len(l) || l[i] != ']' {
			return dst, false
		}
		i++
	}
	return dst, i == len(l)-1 && l[i] == '}'
}

// scalarEnd returns where the scalar JSON value at l[i:] ends: a string
// to its closing quote, anything else (a number, null, true, false) to
// the next ',', ']' or '}'. It reports false for an object, an array, an
// unterminated string or an empty value; the caller's decoder then
// judges the line.
func scalarEnd(l []byte, i int) (int, bool) {
	if i >= len(l) {
		return i, false
	}
	switch l[i] {
	case '"':
		for j := i + 1; j < len(l); j++ {
			switch l[j] {
			case '\\':
				j++
			case '"':
				return j + 1, true
			}
		}
		return i, false
	case '{', '[', ',', ']', '}', ' ':
		return i, false
	}
	j := i
	for j < len(l) && l[j] != ',' && l[j] != ']' && l[j] != '}' {
		if l[j] == '"' || l[j] == ' ' {
			return i, false
		}
		j++
	}
	return j, j > i
}
