package serving

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzValidate decodes a deployment from JSON, defaults and validates it.
// For any bytes: no panic; Default is idempotent; Validate returns nil or
// a *ValidationError with at least one field error; and a valid deployment
// encodes and decodes to the same deployment, which is still valid.
func FuzzValidate(f *testing.F) {
	f.Add([]byte(`{"name":"diabetes","spec":{"model":"examples/diabetes/model.json","engine":"trees","scaling":{"minReplicas":0,"maxReplicas":4,"targetConcurrency":8,"scaleToZeroAfter":"30s"}}}`))
	f.Add([]byte(`{"name":"capped","spec":{"model":"m.json","scaling":{"maxConcurrency":4}}}`))
	f.Add([]byte(`{"name":"d","spec":{"model":"m.json","routing":{"policy":"consistentHash","key":{"header":"X-Session"},"loadFactor":1.5}}}`))
	f.Add([]byte(`{"name":"llm","spec":{"engine":"http","protocol":"openai","command":["vllm"],"routing":{"policy":"prefix","prefixBytes":512}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var d Deployment
		if json.Unmarshal(body, &d) != nil {
			return
		}
		d.Spec.Default()
		var twice Deployment
		d.DeepCopyInto(&twice)
		twice.Spec.Default()
		if diff := cmp.Diff(d.Spec, twice.Spec); diff != "" {
			t.Fatalf("Default is not idempotent (-once +twice):\n%s", diff)
		}
		err := d.Validate()
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("Validate = %#v, want a *ValidationError listing fields", err)
			}
			for _, fe := range ve.Errors {
				if fe == nil || fe.Field == "" || fe.Message == "" {
					t.Fatalf("Validate returned a field error without field or message: %#v", fe)
				}
			}
			return
		}
		sc := d.Spec.Scaling
		if sc.MinReplicas < 0 || sc.MaxReplicas < 1 || sc.MinReplicas > sc.MaxReplicas || sc.TargetConcurrency <= 0 ||
			sc.MaxConcurrency < 0 || sc.MaxConcurrency > MaxConcurrencyLimit {
			t.Fatalf("Validate accepted scaling %+v", sc)
		}
		if d.Spec.Replicas != nil && *d.Spec.Replicas < 0 {
			t.Fatalf("Validate accepted replicas %d", *d.Spec.Replicas)
		}

		enc, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("encoding a valid deployment: %v", err)
		}
		var back Deployment
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatalf("decoding the encoding %s of a valid deployment: %v", enc, err)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("a valid deployment is invalid after a round trip: %v", err)
		}
		enc2, err := json.Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		if string(enc) != string(enc2) {
			t.Fatalf("a valid deployment changed on a round trip:\n first %s\nsecond %s", enc, enc2)
		}
	})
}

// FuzzParseModelRef parses a spec.model string: a reference it accepts
// prints back as a string that parses to the same reference, and a string
// with a path separator or dot is never a reference.
func FuzzParseModelRef(f *testing.F) {
	for _, s := range []string{"diabetes@champion", "diabetes:3", "examples/diabetes/model.json", "s3://b/k", "diabetes", "a:0", "a:+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, ok := ParseModelRef(s)
		if !ok {
			return
		}
		if (ref.Alias == "") == (ref.Version == 0) || ref.Version < 0 {
			t.Fatalf("ParseModelRef(%q) = %+v: want exactly one of alias and a positive version", s, ref)
		}
		again, ok := ParseModelRef(ref.String())
		if !ok || again != ref {
			t.Fatalf("ParseModelRef(%q) = %+v, whose String %q parses to %+v, %v", s, ref, ref.String(), again, ok)
		}
		if ref.String() != s {
			t.Fatalf("ParseModelRef(%q) accepted a spelling that String writes as %q", s, ref.String())
		}
	})
}
