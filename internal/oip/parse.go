package oip

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// This file is ParseRequest's fast path: an infer request read straight
// into an InferRequest, without encoding/json's reflection and its
// separate validation pass. It takes only the request as clients write
// it: the keys of the protocol spelled as it spells them, each once, plain
// strings, integer shapes and no null. For anything else (a key in another
// case or unknown, which encoding/json matches or ignores; a string with
// escapes or invalid UTF-8; null; a fraction in a shape; invalid JSON) it
// gives up, and encoding/json decodes the body, with the same result or
// the error the client gets. So the fast path never decides anything
// encoding/json would decide otherwise; parse_test.go checks that they
// agree.

// maxFastDepth bounds the nesting the fast path follows in "data" and
// "parameters"; deeper values go to encoding/json.
const maxFastDepth = 64

// parseFast decodes body into req and reports whether it could. On false
// req is unchanged.
func parseFast(body []byte, req *InferRequest) bool {
	p := parser{b: body}
	var r InferRequest
	var seen uint8
	if !p.open('{') {
		return false
	}
	for first := true; ; first = false {
		key, done, ok := p.key(first)
		if !ok {
			return false
		}
		if done {
			break
		}
		var bit uint8
		switch string(key) {
		case "id":
			bit, ok = 1, p.str(&r.ID)
		case "parameters":
			bit, ok = 2, p.params(&r.Parameters)
		case "inputs":
			bit, ok = 4, p.inputs(&r.Inputs)
		case "outputs":
			bit, ok = 8, p.outputs(&r.Outputs)
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
	p.space()
	if p.i != len(p.b) {
		return false
	}
	*req = r
	return true
}

// parser reads JSON from b at i.
type parser struct {
	b []byte
	i int
}

func (p *parser) space() {
	for p.i < len(p.b) && isSpace(p.b[p.i]) {
		p.i++
	}
}

// open reads c, the start of an object or array, after white space.
func (p *parser) open(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// key reads the next key of an object and its colon: first is true right
// after the '{'. done is true at the '}' (read).
func (p *parser) key(first bool) (key []byte, done, ok bool) {
	if done, ok = p.next(first, '}'); done || !ok {
		return nil, done, ok
	}
	if key, ok = p.plain(); !ok {
		return nil, false, false
	}
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != ':' {
		return nil, false, false
	}
	p.i++
	p.space()
	return key, false, p.i < len(p.b)
}

// next moves to the next member or element of an object or array that
// closes with end: it reads the comma before it, or the end (done).
func (p *parser) next(first bool, end byte) (done, ok bool) {
	p.space()
	if p.i >= len(p.b) {
		return false, false
	}
	switch c := p.b[p.i]; {
	case c == end:
		p.i++
		return true, true
	case first:
	case c == ',':
		p.i++
		p.space()
	default:
		return false, false
	}
	return false, p.i < len(p.b) && p.b[p.i] != end
}

// plain reads a string without escapes and of valid UTF-8, as its bytes.
func (p *parser) plain() ([]byte, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	start := p.i + 1
	ascii := true
	for i := start; i < len(p.b); i++ {
		switch c := p.b[i]; {
		case c == '"':
			s := p.b[start:i]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			p.i = i + 1
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

func (p *parser) str(dst *string) bool {
	s, ok := p.plain()
	if ok {
		*dst = string(s)
	}
	return ok
}

// datatype reads a string, without allocating for a datatype's name.
func (p *parser) datatype(dst *string) bool {
	s, ok := p.plain()
	if !ok {
		return false
	}
	switch string(s) {
	case FP32:
		*dst = FP32
	case FP64:
		*dst = FP64
	case INT64:
		*dst = INT64
	case INT32:
		*dst = INT32
	case BYTES:
		*dst = BYTES
	case BOOL:
		*dst = BOOL
	default:
		*dst = string(s)
	}
	return true
}

// params reads a parameters object. Strings, numbers and booleans are
// read here; other values go to encoding/json with the whole object.
func (p *parser) params(dst *map[string]any) bool {
	start := p.i
	if !p.open('{') {
		return false
	}
	m := map[string]any{}
	for first := true; ; first = false {
		key, done, ok := p.key(first)
		if !ok {
			return false
		}
		if done {
			break
		}
		var v any
		switch c := p.b[p.i]; {
		case c == '"':
			var s string
			ok = p.str(&s)
			v = s
		case c == 't' || c == 'f':
			v = c == 't'
			ok = p.literal(c == 't')
		case c == '-' || (c >= '0' && c <= '9'):
			from := p.i
			if ok = p.number(); ok {
				var err error
				v, err = strconv.ParseFloat(str(p.b[from:p.i]), 64)
				ok = err == nil
			}
		default:
			return p.paramsJSON(start, dst)
		}
		if !ok {
			return false
		}
		m[string(key)] = v
	}
	*dst = m
	return true
}

// paramsJSON reads the parameters object at start with encoding/json.
func (p *parser) paramsJSON(start int, dst *map[string]any) bool {
	p.i = start
	if !p.skip(0) {
		return false
	}
	var m map[string]any
	if json.Unmarshal(p.b[start:p.i], &m) != nil {
		return false
	}
	*dst = m
	return true
}

func (p *parser) inputs(dst *[]RequestInput) bool {
	if !p.open('[') {
		return false
	}
	ins := make([]RequestInput, 0, 1)
	for first := true; ; first = false {
		done, ok := p.next(first, ']')
		if !ok {
			return false
		}
		if done {
			break
		}
		ins = append(ins, RequestInput{})
		if !p.input(&ins[len(ins)-1]) {
			return false
		}
	}
	*dst = ins
	return true
}

func (p *parser) input(in *RequestInput) bool {
	if !p.open('{') {
		return false
	}
	var seen uint8
	for first := true; ; first = false {
		key, done, ok := p.key(first)
		if !ok {
			return false
		}
		if done {
			return true
		}
		var bit uint8
		switch string(key) {
		case "name":
			bit, ok = 1, p.str(&in.Name)
		case "shape":
			bit, ok = 2, p.shape(&in.Shape)
		case "datatype":
			bit, ok = 4, p.datatype(&in.Datatype)
		case "parameters":
			bit, ok = 8, p.params(&in.Parameters)
		case "data":
			bit, ok = 16, p.data(&in.Data)
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
}

func (p *parser) outputs(dst *[]RequestOutput) bool {
	if !p.open('[') {
		return false
	}
	outs := make([]RequestOutput, 0, 1)
	for first := true; ; first = false {
		done, ok := p.next(first, ']')
		if !ok {
			return false
		}
		if done {
			break
		}
		outs = append(outs, RequestOutput{})
		if !p.output(&outs[len(outs)-1]) {
			return false
		}
	}
	*dst = outs
	return true
}

func (p *parser) output(out *RequestOutput) bool {
	if !p.open('{') {
		return false
	}
	var seen uint8
	for first := true; ; first = false {
		key, done, ok := p.key(first)
		if !ok {
			return false
		}
		if done {
			return true
		}
		var bit uint8
		switch string(key) {
		case "name":
			bit, ok = 1, p.str(&out.Name)
		case "parameters":
			bit, ok = 2, p.params(&out.Parameters)
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
}

// shape reads an array of integers; [] is an empty, non-nil shape, as
// encoding/json makes it.
func (p *parser) shape(dst *[]int64) bool {
	if !p.open('[') {
		return false
	}
	shape := make([]int64, 0, 4)
	for first := true; ; first = false {
		done, ok := p.next(first, ']')
		if !ok {
			return false
		}
		if done {
			break
		}
		start := p.i
		if !p.number() {
			return false
		}
		if !jsonInteger(p.b[start:p.i]) {
			return false // encoding/json refuses a fraction: let it say so
		}
		d, err := strconv.ParseInt(str(p.b[start:p.i]), 10, 64)
		if err != nil {
			return false
		}
		shape = append(shape, d)
	}
	*dst = shape
	return true
}

// data reads any value but null, which it leaves to encoding/json, as the
// bytes of the body it spans.
func (p *parser) data(dst *json.RawMessage) bool {
	start := p.i
	if p.i >= len(p.b) || p.b[p.i] == 'n' || !p.skip(0) {
		return false
	}
	*dst = p.b[start:p.i:p.i]
	return true
}

// skip reads one JSON value, checking its syntax as encoding/json does.
func (p *parser) skip(depth int) bool {
	if p.i >= len(p.b) || depth > maxFastDepth {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '[':
		p.i++
		for first := true; ; first = false {
			done, ok := p.next(first, ']')
			if !ok {
				return false
			}
			if done {
				return true
			}
			if c := p.b[p.i]; c == '-' || (c >= '0' && c <= '9') {
				if !p.number() {
					return false
				}
			} else if !p.skip(depth + 1) {
				return false
			}
		}
	case c == '{':
		p.i++
		for first := true; ; first = false {
			done, ok := p.next(first, '}')
			if !ok {
				return false
			}
			if done {
				return true
			}
			if !p.skipString() {
				return false
			}
			p.space()
			if p.i >= len(p.b) || p.b[p.i] != ':' {
				return false
			}
			p.i++
			p.space()
			if !p.skip(depth + 1) {
				return false
			}
		}
	case c == '"':
		return p.skipString()
	case c == 't':
		return p.literal(true)
	case c == 'f':
		return p.literal(false)
	case c == 'n':
		return p.word("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return false
}

func (p *parser) literal(v bool) bool {
	if v {
		return p.word("true")
	}
	return p.word("false")
}

func (p *parser) word(w string) bool {
	if len(p.b)-p.i < len(w) || string(p.b[p.i:p.i+len(w)]) != w {
		return false
	}
	p.i += len(w)
	return true
}

// skipString reads a string with any valid escapes.
func (p *parser) skipString() bool {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return false
	}
	for i := p.i + 1; i < len(p.b); i++ {
		switch c := p.b[i]; {
		case c == '"':
			p.i = i + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			i++
			if i >= len(p.b) {
				return false
			}
			switch p.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(p.b) {
					return false
				}
				for _, h := range p.b[i+1 : i+5] {
					if !isHex(h) {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number reads a number as JSON spells it.
func (p *parser) number() bool {
	end := numberEnd(p.b, p.i)
	if end < 0 {
		return false
	}
	p.i = end
	return true
}
