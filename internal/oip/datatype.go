package oip

import (
	"fmt"
	"strings"
)

// Datatypes of the protocol, as OIP v2 and Triton spell them.
const (
	BOOL   = "BOOL"
	INT8   = "INT8"
	INT16  = "INT16"
	INT32  = "INT32"
	INT64  = "INT64"
	UINT8  = "UINT8"
	UINT16 = "UINT16"
	UINT32 = "UINT32"
	UINT64 = "UINT64"
	FP16   = "FP16"
	BF16   = "BF16"
	FP32   = "FP32"
	FP64   = "FP64"
	BYTES  = "BYTES"
)

// Datatypes lists every datatype of the protocol, in the order error
// messages name them.
var Datatypes = []string{BOOL, INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FP16, BF16, FP32, FP64, BYTES}

// datatypeList is Datatypes as error messages write it.
var datatypeList = strings.Join(Datatypes, ", ")

// This table is the one place that says how each datatype is held in
// Tensor.Data and how large one element is in raw form (binary tensor data,
// gRPC raw contents, worker channels):
//
//	datatype  Go type of Data  raw bytes per element
//	BOOL      []bool           1 (0 or 1)
//	INT8      []int8           1
//	INT16     []int16          2
//	INT32     []int32          4
//	INT64     []int64          8
//	UINT8     []uint8          1
//	UINT16    []uint16         2
//	UINT32    []uint32         4
//	UINT64    []uint64         8
//	FP16      []Float16        2 (IEEE 754 binary16 bits)
//	BF16      []BFloat16       2 (bfloat16 bits)
//	FP32      []float32        4
//	FP64      []float64        8
//	BYTES     []string         4-byte length, then the bytes

// ElementSize returns the bytes one element of datatype takes in raw form:
// 1 to 8 for a fixed-size datatype, 0 for BYTES (whose elements vary in
// length) and -1 for a name that is not a datatype of the protocol.
func ElementSize(datatype string) int {
	switch datatype {
	case BOOL, INT8, UINT8:
		return 1
	case INT16, UINT16, FP16, BF16:
		return 2
	case INT32, UINT32, FP32:
		return 4
	case INT64, UINT64, FP64:
		return 8
	case BYTES:
		return 0
	}
	return -1
}

// Known reports whether datatype is one of Datatypes.
func Known(datatype string) bool { return ElementSize(datatype) >= 0 }

// IsNumeric reports whether datatype holds numbers: the integer and
// floating-point datatypes, not BOOL or BYTES.
func IsNumeric(datatype string) bool {
	switch datatype {
	case INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FP16, BF16, FP32, FP64:
		return true
	}
	return false
}

// IsFloat reports whether datatype is a floating-point datatype, whose
// elements may be NaN or infinite.
func IsFloat(datatype string) bool {
	switch datatype {
	case FP16, BF16, FP32, FP64:
		return true
	}
	return false
}

// GoType names the Go type of Tensor.Data for datatype ("[]float32"), or
// "" for an unknown datatype.
func GoType(datatype string) string {
	switch datatype {
	case BOOL:
		return "[]bool"
	case INT8:
		return "[]int8"
	case INT16:
		return "[]int16"
	case INT32:
		return "[]int32"
	case INT64:
		return "[]int64"
	case UINT8:
		return "[]uint8"
	case UINT16:
		return "[]uint16"
	case UINT32:
		return "[]uint32"
	case UINT64:
		return "[]uint64"
	case FP16:
		return "[]oip.Float16"
	case BF16:
		return "[]oip.BFloat16"
	case FP32:
		return "[]float32"
	case FP64:
		return "[]float64"
	case BYTES:
		return "[]string"
	}
	return ""
}

// DatatypeOf returns the datatype whose Go type data has, and false when
// data is not one of the slice types of the table above.
func DatatypeOf(data any) (string, bool) {
	switch data.(type) {
	case []bool:
		return BOOL, true
	case []int8:
		return INT8, true
	case []int16:
		return INT16, true
	case []int32:
		return INT32, true
	case []int64:
		return INT64, true
	case []uint8:
		return UINT8, true
	case []uint16:
		return UINT16, true
	case []uint32:
		return UINT32, true
	case []uint64:
		return UINT64, true
	case []Float16:
		return FP16, true
	case []BFloat16:
		return BF16, true
	case []float32:
		return FP32, true
	case []float64:
		return FP64, true
	case []string:
		return BYTES, true
	}
	return "", false
}

// DataLen returns the number of elements of data, and false when data is
// not one of the slice types of the table above.
func DataLen(data any) (int, bool) {
	switch d := data.(type) {
	case []bool:
		return len(d), true
	case []int8:
		return len(d), true
	case []int16:
		return len(d), true
	case []int32:
		return len(d), true
	case []int64:
		return len(d), true
	case []uint8:
		return len(d), true
	case []uint16:
		return len(d), true
	case []uint32:
		return len(d), true
	case []uint64:
		return len(d), true
	case []Float16:
		return len(d), true
	case []BFloat16:
		return len(d), true
	case []float32:
		return len(d), true
	case []float64:
		return len(d), true
	case []string:
		return len(d), true
	}
	return 0, false
}

// unknownDatatype is the error for a datatype not in Datatypes.
func unknownDatatype(datatype string) error {
	return fmt.Errorf("unsupported datatype %q: use one of %s", datatype, datatypeList)
}

// DatatypeError says that datatype is not one of the protocol's, listing
// those that are.
func DatatypeError(datatype string) string { return unknownDatatype(datatype).Error() }
