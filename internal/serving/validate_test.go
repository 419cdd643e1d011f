package serving

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func valid() Deployment {
	d := Deployment{Name: "m", Spec: Spec{Model: "m.json"}}
	d.Spec.Default()
	return d
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Deployment)
		want   []string // substrings of the error; none means valid
	}{
		{name: "defaults are valid", change: func(*Deployment) {}},
		{name: "bad name", change: func(d *Deployment) { d.Name = "My_Model" }, want: []string{`name: "My_Model" must be`}},
		{name: "empty name", change: func(d *Deployment) { d.Name = "" }, want: []string{"name: is required"}},
		{name: "no model", change: func(d *Deployment) { d.Spec.Model = " " }, want: []string{"spec.model: is required"}},
		{name: "unknown engine", change: func(d *Deployment) { d.Spec.Engine = "tf" }, want: []string{`unknown engine "tf"`}},
		{name: "min above max", change: func(d *Deployment) { d.Spec.Scaling.MinReplicas, d.Spec.Scaling.MaxReplicas = 3, 2 }, want: []string{"minReplicas (3) must not exceed maxReplicas (2)"}},
		{name: "zero target", change: func(d *Deployment) { d.Spec.Scaling.TargetConcurrency = -1 }, want: []string{"targetConcurrency: must be greater than 0"}},
		{name: "max concurrency", change: func(d *Deployment) { d.Spec.Scaling.MaxConcurrency = 16 }},
		{name: "max concurrency at the bound", change: func(d *Deployment) { d.Spec.Scaling.MaxConcurrency = MaxConcurrencyLimit }},
		{name: "negative max concurrency", change: func(d *Deployment) { d.Spec.Scaling.MaxConcurrency = -1 }, want: []string{"spec.scaling.maxConcurrency: must be between 0 (no cap) and 10000, got -1"}},
		{name: "max concurrency abuse", change: func(d *Deployment) { d.Spec.Scaling.MaxConcurrency = 10001 }, want: []string{"spec.scaling.maxConcurrency: must be between 0 (no cap) and 10000, got 10001"}},
		{name: "short window", change: func(d *Deployment) { d.Spec.Scaling.StableWindow = D(time.Second) }, want: []string{"stableWindow: must be between 6s and 1h"}},
		{name: "every problem at once", change: func(d *Deployment) {
			d.Name, d.Spec.Model, d.Spec.Scaling.MaxReplicas = "", "", 0
		}, want: []string{"name: is required", "spec.model", "maxReplicas: must be at least 1"}},
		{name: "python needs a class", change: func(d *Deployment) { d.Spec.Engine = "python" }, want: []string{"spec.python.class: is required"}},
		{name: "python class form", change: func(d *Deployment) { d.Spec.Engine, d.Spec.Python = "python", &Python{Class: "model.py"} }, want: []string{`"model.py" must be`}},
		{name: "python ok", change: func(d *Deployment) { d.Spec.Engine, d.Spec.Python = "python", &Python{Class: "model.py:Model"} }},
		{name: "python workers", change: func(d *Deployment) { d.Spec.Engine, d.Spec.Python = "python", &Python{Class: "m.py:M", Workers: 4} }},
		{name: "python too many workers", change: func(d *Deployment) { d.Spec.Engine, d.Spec.Python = "python", &Python{Class: "m.py:M", Workers: 65} }, want: []string{"spec.python.workers: 65 is out of range"}},
		{name: "python negative workers", change: func(d *Deployment) { d.Spec.Engine, d.Spec.Python = "python", &Python{Class: "m.py:M", Workers: -1} }, want: []string{"spec.python.workers: -1 is out of range"}},
		{name: "http needs command or url", change: func(d *Deployment) { d.Spec.Engine = "http" }, want: []string{"exactly one of command"}},
		{name: "http both", change: func(d *Deployment) {
			d.Spec.Engine, d.Spec.Command, d.Spec.URL = "http", []string{"srv"}, "http://127.0.0.1:1"
		}, want: []string{"exactly one of command"}},
		{name: "http url scheme", change: func(d *Deployment) { d.Spec.Engine, d.Spec.URL = "http", "127.0.0.1:1" }, want: []string{"must start with http://"}},
		{name: "http command without model", change: func(d *Deployment) { d.Spec.Engine, d.Spec.Model, d.Spec.Command = "http", "", []string{"srv"} }},
		{name: "command on trees", change: func(d *Deployment) { d.Spec.Command = []string{"x"} }, want: []string{"only for engine http"}},
		{name: "batching bounds", change: func(d *Deployment) {
			d.Spec.Batching = &Batching{MaxBatchSize: 8, PreferredBatchSizes: []int{4, 16}, MaxQueueDelay: D(-time.Millisecond)}
		}, want: []string{"16 is outside 1..maxBatchSize (8)", "maxQueueDelay: must be between 0 and 10s"}},
		// Hostile input (issue 10): replica counts no host can run.
		{name: "maxReplicas abuse", change: func(d *Deployment) {
			d.Spec.Scaling.MinReplicas, d.Spec.Scaling.MaxReplicas = 40, 1000000000
		}, want: []string{"spec.scaling.maxReplicas: must be at most 1000, got 1000000000"}},
		{name: "minReplicas above max", change: func(d *Deployment) { d.Spec.Scaling.MinReplicas = 40 }, want: []string{"minReplicas (40) must not exceed maxReplicas (4)"}},
		{name: "maxReplicas at the bound", change: func(d *Deployment) { d.Spec.Scaling.MaxReplicas = MaxReplicasLimit }},
		{name: "pinned replicas abuse", change: func(d *Deployment) { n := int32(5000); d.Spec.Replicas = &n }, want: []string{"spec.replicas: must be at most 1000"}},
		{name: "warm pool abuse", change: func(d *Deployment) { d.Spec.ColdStart.WarmPool = 1 << 30 }, want: []string{"spec.coldStart.warmPool: must be at most 1000"}},
		{name: "http upstream model", change: func(d *Deployment) {
			d.Spec.Engine, d.Spec.Model, d.Spec.Command, d.Spec.UpstreamModel = "http", "", []string{"srv"}, "resnet50_onnx"
		}},
		{name: "openai", change: func(d *Deployment) {
			d.Spec.Engine, d.Spec.Model, d.Spec.Command, d.Spec.Protocol = "http", "", []string{"vllm", "serve"}, ProtocolOpenAI
			d.Spec.UpstreamModel = "meta-llama/Llama-3.1-8B-Instruct"
		}},
		{name: "oip named", change: func(d *Deployment) {
			d.Spec.Engine, d.Spec.Model, d.Spec.URL, d.Spec.Protocol = "http", "", "http://127.0.0.1:1", ProtocolOIP
		}},
		{name: "openai on trees", change: func(d *Deployment) { d.Spec.Protocol = ProtocolOpenAI }, want: []string{"spec.protocol: openai is only for engine http"}},
		{name: "oip named on trees", change: func(d *Deployment) { d.Spec.Protocol = ProtocolOIP }, want: []string{"spec.protocol: is only for engine http"}},
		{name: "unknown protocol", change: func(d *Deployment) {
			d.Spec.Engine, d.Spec.Command, d.Spec.Protocol = "http", []string{"srv"}, "grpc"
		}, want: []string{`unknown protocol "grpc": use oip (the default) or openai`}},
		{name: "upstream model on onnx", change: func(d *Deployment) { d.Spec.UpstreamModel = "x" }, want: []string{"spec.upstreamModel: is only for engine http"}},
		{name: "upstream model with a slash for oip", change: func(d *Deployment) {
			d.Spec.Engine, d.Spec.Command, d.Spec.UpstreamModel = "http", []string{"srv"}, "org/model"
		}, want: []string{`"org/model" cannot name an OIP v2 model`}},
		{name: "upstream model with a newline", change: func(d *Deployment) {
			d.Spec.Engine, d.Spec.Command, d.Spec.UpstreamModel = "http", []string{"srv"}, "a\nb"
		}, want: []string{"control characters"}},
		{name: "upstream model too long", change: func(d *Deployment) {
			d.Spec.Engine, d.Spec.Command, d.Spec.UpstreamModel = "http", []string{"srv"}, strings.Repeat("m", 300)
		}, want: []string{"300 bytes long; at most 256"}},
		{name: "bad env name", change: func(d *Deployment) { d.Spec.Env = map[string]string{"A=B": "x"} }, want: []string{`"A=B" is not a valid environment variable name`}},
		// Routing policies (issue 14).
		{name: "routing empty", change: func(d *Deployment) { d.Spec.Routing = &Routing{} }},
		{name: "schedule business hours", change: func(d *Deployment) {
			d.Spec.Scaling.Schedule = []ScheduleWindow{{Name: "business-hours", Days: []string{"Mon-Fri"}, Start: "07:00", End: "17:00", TimeZone: "Europe/Paris", MinReplicas: ptr32(2)}}
		}},
		{name: "schedule overnight every day", change: func(d *Deployment) {
			d.Spec.Scaling.Schedule = []ScheduleWindow{{Start: "22:00", End: "06:00", MaxReplicas: ptr32(1)}}
		}},
		{name: "schedule bad window", change: func(d *Deployment) {
			d.Spec.Scaling.Schedule = []ScheduleWindow{{Days: []string{"Funday"}, Start: "7am", End: "17:00", TimeZone: "Mars/Olympus", MinReplicas: ptr32(9), MaxReplicas: ptr32(2)}}
		}, want: []string{
			`spec.scaling.schedule[0].start: "7am" is not a time of day: give HH:MM, such as 07:00`,
			`spec.scaling.schedule[0].days: "Funday" is not a day: give Mon, Tue, Wed, Thu, Fri, Sat, Sun or a range such as Mon-Fri`,
			`spec.scaling.schedule[0].timeZone: "Mars/Olympus" is not an IANA time zone: give one such as Europe/Paris or America/New_York`,
			"spec.scaling.schedule[0].minReplicas: 9 is above the window's maxReplicas 2",
		}},
		{name: "schedule without bounds", change: func(d *Deployment) {
			d.Spec.Scaling.Schedule = []ScheduleWindow{{Start: "07:00", End: "17:00"}}
		}, want: []string{"spec.scaling.schedule[0]: sets neither minReplicas nor maxReplicas: give at least one"}},
		{name: "routing missing key rejected", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: "X-Session"}, MissingKey: MissingKeyReject}
		}},
		{name: "routing missing key unknown", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: "X-Session"}, MissingKey: "drop"}
		}, want: []string{`spec.routing.missingKey: unknown value "drop": use leastOutstanding (route a request without the key as if there were no routing) or reject (answer it 400)`}},
		{name: "routing missing key without a key", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{MissingKey: MissingKeyReject}
		}, want: []string{"spec.routing.missingKey: is only for policy consistentHash or prefix, not leastOutstanding: remove it"}},
		{name: "routing least outstanding", change: func(d *Deployment) { d.Spec.Routing = &Routing{Policy: RoutingLeastOutstanding} }},
		{name: "routing unknown policy", change: func(d *Deployment) { d.Spec.Routing = &Routing{Policy: "roundRobin"} }, want: []string{`spec.routing.policy: unknown policy "roundRobin": use one of leastOutstanding, consistentHash, prefix`}},
		{name: "routing hash by header", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: "X-Session"}, LoadFactor: 1.5}
		}},
		{name: "routing hash by input", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Input: "user_id"}}
		}},
		{name: "routing hash without key", change: func(d *Deployment) { d.Spec.Routing = &Routing{Policy: RoutingConsistentHash} }, want: []string{"spec.routing.key: policy consistentHash needs exactly one of header"}},
		{name: "routing hash with both keys", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: "X-Session", Input: "user_id"}}
		}, want: []string{"spec.routing.key: policy consistentHash needs exactly one of header"}},
		{name: "routing hash by input on openai", change: func(d *Deployment) {
			d.Spec.Engine, d.Spec.Command, d.Spec.Protocol = "http", []string{"vllm"}, ProtocolOpenAI
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Input: "user_id"}}
		}, want: []string{"spec.routing.key.input: names an OIP v2 input tensor"}},
		{name: "routing header with a space", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: "X Session"}}
		}, want: []string{`spec.routing.key.header: "X Session" is not an HTTP header name`}},
		{name: "routing header with a colon", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: ":authority"}}
		}, want: []string{`spec.routing.key.header: ":authority" is not an HTTP header name`}},
		{name: "routing header too long", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: strings.Repeat("h", 300)}}
		}, want: []string{"spec.routing.key.header: is 300 bytes long; at most 256"}},
		{name: "routing input with a newline", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Input: "user\nid"}}
		}, want: []string{"spec.routing.key.input", "control characters"}},
		{name: "routing key on least outstanding", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Key: &RoutingKey{Header: "X-Session"}}
		}, want: []string{"spec.routing.key: is only for policy consistentHash or prefix, not leastOutstanding"}},
		{name: "routing load factor on least outstanding", change: func(d *Deployment) { d.Spec.Routing = &Routing{LoadFactor: 2} }, want: []string{"spec.routing.loadFactor: is only for policy consistentHash or prefix"}},
		{name: "routing load factor of 1", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: "X-Session"}, LoadFactor: 1}
		}, want: []string{"spec.routing.loadFactor: must be above 1 and at most 10, e.g. 1.25, got 1"}},
		{name: "routing load factor too large", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: "X-Session"}, LoadFactor: 10.5}
		}, want: []string{"spec.routing.loadFactor: must be above 1 and at most 10"}},
		{name: "routing load factor negative", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: "X-Session"}, LoadFactor: -2}
		}, want: []string{"spec.routing.loadFactor: must be above 1"}},
		{name: "routing load factor at the bound", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: "X-Session"}, LoadFactor: MaxLoadFactor}
		}},
		{name: "routing prefix on openai", change: func(d *Deployment) {
			d.Spec.Engine, d.Spec.Command, d.Spec.Protocol = "http", []string{"vllm"}, ProtocolOpenAI
			d.Spec.Routing = &Routing{Policy: RoutingPrefix, PrefixBytes: 1024, LoadFactor: 2}
		}},
		{name: "routing prefix of a header", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingPrefix, Key: &RoutingKey{Header: "X-Prompt"}}
		}},
		{name: "routing prefix without a prompt", change: func(d *Deployment) { d.Spec.Routing = &Routing{Policy: RoutingPrefix} }, want: []string{"spec.routing.key: policy prefix reads the prompt of OpenAI requests"}},
		{name: "routing prefix of an input", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingPrefix, Key: &RoutingKey{Input: "text"}}
		}, want: []string{"spec.routing.key.input: is not for policy prefix"}},
		{name: "routing prefix bytes out of range", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingPrefix, Key: &RoutingKey{Header: "X-Prompt"}, PrefixBytes: -1}
		}, want: []string{"spec.routing.prefixBytes: must be between 1 and 65536, got -1"}},
		{name: "routing prefix bytes on consistent hash", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: "X-Session"}, PrefixBytes: 64}
		}, want: []string{"spec.routing.prefixBytes: is only for policy prefix, not consistentHash"}},
		{name: "routing every problem at once", change: func(d *Deployment) {
			d.Spec.Routing = &Routing{Policy: RoutingConsistentHash, Key: &RoutingKey{Header: "a b", Input: "x"}, LoadFactor: 0.5, PrefixBytes: 8}
		}, want: []string{"spec.routing.key:", "spec.routing.key.header:", "spec.routing.loadFactor:", "spec.routing.prefixBytes:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid()
			tt.change(&d)
			err := d.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil; want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q; want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestDefaultKeepsWhatIsSet(t *testing.T) {
	s := Spec{Model: "m", Engine: "onnx", Scaling: Scaling{MinReplicas: 6, TargetConcurrency: 2}}
	s.Default()
	want := Scaling{MinReplicas: 6, MaxReplicas: 6, TargetConcurrency: 2, ScaleToZeroAfter: D(DefaultScaleToZeroAfter),
		StableWindow: D(DefaultStableWindow), PanicWindowPercent: DefaultPanicWindowPercent, PanicThreshold: DefaultPanicThreshold}
	if diff := cmp.Diff(want, s.Scaling); diff != "" {
		t.Errorf("Default (-want +got):\n%s", diff)
	}
	if s.Engine != "onnx" {
		t.Errorf("Default changed the engine to %q", s.Engine)
	}
}

func TestDurationJSON(t *testing.T) {
	var s Scaling
	if err := json.Unmarshal([]byte(`{"scaleToZeroAfter":"1m30s"}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.ScaleToZeroAfter.Duration != 90*time.Second {
		t.Errorf("scaleToZeroAfter = %v; want 1m30s", s.ScaleToZeroAfter)
	}
	b, _ := json.Marshal(D(2 * time.Second))
	if string(b) != `"2s"` {
		t.Errorf("Marshal = %s; want \"2s\"", b)
	}
	for _, bad := range []string{`{"scaleToZeroAfter":"5 minutes"}`, `{"scaleToZeroAfter":30}`} {
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Errorf("Unmarshal(%s) succeeded; want an error", bad)
		}
	}
}

func TestModelRefs(t *testing.T) {
	tests := []struct {
		in   string
		want ModelRef
		ok   bool
	}{
		{"diabetes@champion", ModelRef{Model: "diabetes", Alias: "champion"}, true},
		{"diabetes:3", ModelRef{Model: "diabetes", Version: 3}, true},
		{"diabetes:03", ModelRef{}, false},
		{"diabetes:0", ModelRef{}, false},
		{"examples/diabetes/model.json", ModelRef{}, false},
		{"s3://bucket/key", ModelRef{}, false},
		{"diabetes", ModelRef{}, false},
		{"Diabetes@x", ModelRef{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseModelRef(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseModelRef(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		if ok && got.String() != tt.in {
			t.Errorf("String() = %q; want %q", got.String(), tt.in)
		}
	}
	s := Spec{Model: "diabetes@champion"}
	s.Default()
	if s.Engine != "" {
		t.Errorf("Default set engine %q for a registry reference; the version carries it", s.Engine)
	}
	d := Deployment{Name: "d", Spec: s}
	if err := d.Validate(); err != nil {
		t.Errorf("Validate of a reference without engine: %v", err)
	}
}

func ptr32(n int32) *int32 { return &n }
