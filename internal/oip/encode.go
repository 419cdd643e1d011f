package oip

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Special floating-point values have no JSON literal. Responses write them
// as Triton does (rapidjson's kWriteNanAndInfFlag): as the bare tokens NaN,
// Infinity and -Infinity, which Triton's parser and Python's json module
// (json.loads, requests' Response.json) read. Requests may send those
// tokens too, or the strings "NaN", "Infinity" and "-Infinity", or null for
// NaN (see Decode and ParseRequest).
const (
	tokenNaN    = "NaN"
	tokenInf    = "Infinity"
	tokenNegInf = "-Infinity"
)

// specialFloat returns the token for a NaN or infinite f.
func specialFloat(f float64) (string, bool) {
	switch {
	case math.IsNaN(f):
		return tokenNaN, true
	case math.IsInf(f, 1):
		return tokenInf, true
	case math.IsInf(f, -1):
		return tokenNegInf, true
	}
	return "", false
}

// AppendResponse appends the body of an infer response to dst and returns
// it with the length of its JSON part. Outputs i with binary[i] true (binary
// may be nil or shorter) travel as binary tensor data: their JSON object
// carries "parameters":{"binary_data_size":n} instead of "data", and their
// raw data follows the JSON in the order of the outputs. The JSON length is
// then the Inference-Header-Content-Length to send.
//
// Floating-point NaN and infinities are written as the tokens NaN,
// Infinity and -Infinity (see above). A rank-0 output has "shape":[].
func AppendResponse(dst []byte, r *InferResponse, binary []bool) ([]byte, int, error) {
	start := len(dst)
	b := append(dst, `{"model_name":`...)
	b = appendString(b, r.ModelName)
	if r.ModelVersion != "" {
		b = append(b, `,"model_version":`...)
		b = appendString(b, r.ModelVersion)
	}
	if r.ID != "" {
		b = append(b, `,"id":`...)
		b = appendString(b, r.ID)
	}
	if len(r.Parameters) > 0 {
		p, err := json.Marshal(r.Parameters)
		if err != nil {
			return dst, 0, fmt.Errorf("encoding the response parameters: %w", err)
		}
		b = append(b, `,"parameters":`...)
		b = append(b, p...)
	}
	b = append(b, `,"outputs":[`...)
	anyBinary := false
	for i, t := range r.Outputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendTensorHead(b, t)
		if i < len(binary) && binary[i] {
			size, err := RawSize(t)
			if err != nil {
				return dst, 0, fmt.Errorf("output %w", err)
			}
			b = append(b, `,"parameters":{"binary_data_size":`...)
			b = strconv.AppendInt(b, int64(size), 10)
			b = append(b, "}}"...)
			anyBinary = true
			continue
		}
		b = append(b, `,"data":`...)
		var err error
		if b, err = AppendData(b, t); err != nil {
			return dst, 0, fmt.Errorf("output %w", err)
		}
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	jsonLen := len(b) - start
	if !anyBinary {
		return b, jsonLen, nil
	}
	for i, t := range r.Outputs {
		if i < len(binary) && binary[i] {
			var err error
			if b, err = AppendRaw(b, t); err != nil {
				return dst, 0, fmt.Errorf("output %w", err)
			}
		}
	}
	return b, jsonLen, nil
}

// appendShape writes shape as a JSON array; nil is [] (a scalar).
func appendShape(b []byte, shape []int64) []byte {
	b = append(b, '[')
	for i, d := range shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return append(b, ']')
}

// AppendData appends t's data as a flat JSON array, with NaN and
// infinities as the tokens described above and BYTES elements as strings.
// It fails when Data is not of a tensor type.
func AppendData(b []byte, t Tensor) ([]byte, error) {
	switch d := t.Data.(type) {
	case []float32:
		return appendEach(b, d, func(b []byte, v float32) []byte { return appendFloat(b, float64(v), 32) }), nil
	case []float64:
		return appendEach(b, d, func(b []byte, v float64) []byte { return appendFloat(b, v, 64) }), nil
	case []int32:
		return appendEach(b, d, func(b []byte, v int32) []byte { return strconv.AppendInt(b, int64(v), 10) }), nil
	case []int64:
		return appendEach(b, d, func(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }), nil
	case []bool:
		return appendEach(b, d, strconv.AppendBool), nil
	case []string:
		return appendEach(b, d, appendString), nil
	case []int8:
		return appendEach(b, d, func(b []byte, v int8) []byte { return strconv.AppendInt(b, int64(v), 10) }), nil
	case []int16:
		return appendEach(b, d, func(b []byte, v int16) []byte { return strconv.AppendInt(b, int64(v), 10) }), nil
	case []uint8:
		return appendEach(b, d, func(b []byte, v uint8) []byte { return strconv.AppendUint(b, uint64(v), 10) }), nil
	case []uint16:
		return appendEach(b, d, func(b []byte, v uint16) []byte { return strconv.AppendUint(b, uint64(v), 10) }), nil
	case []uint32:
		return appendEach(b, d, func(b []byte, v uint32) []byte { return strconv.AppendUint(b, uint64(v), 10) }), nil
	case []uint64:
		return appendEach(b, d, func(b []byte, v uint64) []byte { return strconv.AppendUint(b, v, 10) }), nil
	case []Float16:
		return appendEach(b, d, appendFloat16), nil
	case []BFloat16:
		return appendEach(b, d, appendBFloat16), nil
	}
	return b, fmt.Errorf("%q: data of type %T is not a tensor type", t.Name, t.Data)
}

func appendEach[T any](b []byte, d []T, put func([]byte, T) []byte) []byte {
	b = append(b, '[')
	for i, v := range d {
		if i > 0 {
			b = append(b, ',')
		}
		b = put(b, v)
	}
	return append(b, ']')
}

// appendFloat writes f as encoding/json does (shortest digits that read
// back as the same float of bits precision; exponent form below 1e-6 and
// from 1e21 on), and NaN and infinities as tokens.
func appendFloat(b []byte, f float64, bits int) []byte {
	if special, ok := specialFloat(f); ok {
		return append(b, special...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// 1e-07 → 1e-7, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json writes it; BYTES holding binary data should travel as
// binary tensor data instead.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// MarshalJSON writes t as the protocol's tensor object, so that
// encoding/json users get what AppendResponse writes: UINT8 data as numbers
// (not base64), FP16 and BF16 as numbers. Standard JSON has no NaN or
// infinity, so here they are the strings "NaN", "Infinity" and "-Infinity",
// which Decode reads; AppendResponse and RequestBody write Triton's bare
// tokens instead. Data of another type is written as encoding/json would.
func (t Tensor) MarshalJSON() ([]byte, error) {
	b := []byte(`{"name":`)
	b = appendString(b, t.Name)
	b = append(b, `,"datatype":`...)
	b = appendString(b, t.Datatype)
	b = append(b, `,"shape":`...)
	if t.Shape == nil {
		b = append(b, "null"...)
	} else {
		b = appendShape(b, t.Shape)
	}
	b = append(b, `,"data":`...)
	if _, ok := DatatypeOf(t.Data); ok {
		data, err := AppendData(nil, t)
		if err != nil {
			return nil, err
		}
		data, _ = quoteSpecialFloats(data)
		b = append(b, data...)
	} else {
		data, err := json.Marshal(t.Data)
		if err != nil {
			return nil, err
		}
		b = append(b, data...)
	}
	return append(b, '}'), nil
}

// appendTensorHead appends the start of t's JSON object, up to its shape:
// {"name":...,"datatype":...,"shape":[...]
func appendTensorHead(b []byte, t Tensor) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, t.Name)
	b = append(b, `,"datatype":`...)
	b = appendString(b, t.Datatype)
	b = append(b, `,"shape":`...)
	return appendShape(b, t.Shape)
}
