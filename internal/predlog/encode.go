package predlog

import (
	"encoding/json"
	"time"
	"unicode/utf8"
)

// JSONRecord is one line of a JSONL part. A payload that is valid JSON is
// embedded as is (inputs, outputs); other text (UTF-8 without control
// characters but tab and newlines: server-sent events of a streamed
// OpenAI answer) is a JSON string (inputs_text, outputs_text); any other
// payload (binary tensors) is written base64-encoded (inputs_base64,
// outputs_base64).
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
	InputsText    string          `json:"inputs_text,omitempty"`
	InputsBase64  []byte          `json:"inputs_base64,omitempty"`
	Outputs       json.RawMessage `json:"outputs,omitempty"`
	OutputsText   string          `json:"outputs_text,omitempty"`
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
	j.Inputs, j.InputsText, j.InputsBase64 = jsonTextOrBytes(r.Inputs)
	j.Outputs, j.OutputsText, j.OutputsBase64 = jsonTextOrBytes(r.Outputs)
	return j
}

// jsonTextOrBytes returns b as JSON, as text or as bytes, whichever it is
// (see JSONRecord).
func jsonTextOrBytes(b []byte) (json.RawMessage, string, []byte) {
	switch {
	case len(b) == 0:
		return nil, "", nil
	case json.Valid(b):
		return b, "", nil
	case isText(b):
		return nil, string(b), nil
	}
	return nil, "", b
}

// isText reports whether b is UTF-8 text without control characters
// other than tab, newline and carriage return.
func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	return utf8.Valid(b)
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
