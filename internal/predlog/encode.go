package predlog

import (
	"encoding/json"
	"time"
)

// JSONRecord is one line of a JSONL part. A payload that is valid JSON is
// embedded as is (inputs, outputs); any other payload (binary tensors) is
// written base64-encoded (inputs_base64, outputs_base64).
type JSONRecord struct {
	Time          time.Time       `json:"time"`
	Deployment    string          `json:"deployment"`
	ModelVersion  string          `json:"model_version,omitempty"`
	Tenant        string          `json:"tenant,omitempty"`
	TraceID       string          `json:"trace_id,omitempty"`
	RequestID     string          `json:"request_id,omitempty"`
	Status        int             `json:"status"`
	LatencyMS     float64         `json:"latency_ms"`
	Inputs        json.RawMessage `json:"inputs,omitempty"`
	InputsBase64  []byte          `json:"inputs_base64,omitempty"`
	Outputs       json.RawMessage `json:"outputs,omitempty"`
	OutputsBase64 []byte          `json:"outputs_base64,omitempty"`
}

func toJSON(r *Record) JSONRecord {
	j := JSONRecord{
		Time:         r.Time.UTC(),
		Deployment:   r.Deployment,
		ModelVersion: r.ModelVersion,
		Tenant:       r.Tenant,
		TraceID:      r.TraceID,
		RequestID:    r.RequestID,
		Status:       r.Status,
		LatencyMS:    float64(r.Latency) / float64(time.Millisecond),
	}
	j.Inputs, j.InputsBase64 = jsonOrBytes(r.Inputs)
	j.Outputs, j.OutputsBase64 = jsonOrBytes(r.Outputs)
	return j
}

func jsonOrBytes(b []byte) (json.RawMessage, []byte) {
	if len(b) == 0 {
		return nil, nil
	}
	if json.Valid(b) {
		return b, nil
	}
	return nil, b
}

// ParquetRecord is one row of a Parquet part. Inputs and outputs are the
// raw payloads (JSON text for OIP v2 JSON), zstd-compressed; the
// low-cardinality strings are dictionary-encoded.
type ParquetRecord struct {
	// Time is microseconds since the Unix epoch, UTC.
	Time         int64  `parquet:"time,timestamp(microsecond)"`
	Deployment   string `parquet:"deployment,dict"`
	ModelVersion string `parquet:"model_version,dict"`
	Tenant       string `parquet:"tenant,dict"`
	TraceID      string `parquet:"trace_id"`
	RequestID    string `parquet:"request_id"`
	Status       int32  `parquet:"status"`
	LatencyUS    int64  `parquet:"latency_us"`
	Inputs       []byte `parquet:"inputs,zstd"`
	Outputs      []byte `parquet:"outputs,zstd"`
}

func toParquet(r *Record) ParquetRecord {
	return ParquetRecord{
		Time:         r.Time.UnixMicro(),
		Deployment:   r.Deployment,
		ModelVersion: r.ModelVersion,
		Tenant:       r.Tenant,
		TraceID:      r.TraceID,
		RequestID:    r.RequestID,
		Status:       int32(r.Status),
		LatencyUS:    r.Latency.Microseconds(),
		Inputs:       r.Inputs,
		Outputs:      r.Outputs,
	}
}
