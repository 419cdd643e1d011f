package replica

import (
	"slices"
	"testing"

	"github.com/ebb-ml/ebb/internal/serving"
)

func TestArgsCarryTheModelVersion(t *testing.T) {
	args := Args(Spec{ID: "d-1", Deployment: "d", Model: "s3://b/k", Engine: "trees", Version: "diabetes:3"}, "--addr", ":8080")
	i := slices.Index(args, "--model-version")
	if i < 0 || i+1 >= len(args) || args[i+1] != "diabetes:3" {
		t.Errorf("Args = %q; want --model-version diabetes:3", args)
	}
	if args := Args(Spec{ID: "d-1", Deployment: "d", Model: "/m.json", Engine: "trees"}); slices.Contains(args, "--model-version") {
		t.Errorf("Args of a model given by path = %q; want no --model-version", args)
	}
}

func TestArgsOfAnOpenAIServer(t *testing.T) {
	s := SpecFor("llm", serving.Spec{Engine: "http", Command: []string{"vllm", "serve", "--port", "$PORT"},
		UpstreamModel: "org/Llama", Protocol: serving.ProtocolOpenAI})
	s.ID = "llm-1"
	args := Args(s, "--addr", ":8080")
	dash := slices.Index(args, "--")
	flag := func(name string) string {
		i := slices.Index(args, name)
		if i < 0 || i+1 >= len(args) || (dash >= 0 && i > dash) {
			return ""
		}
		return args[i+1]
	}
	if flag("--upstream-model") != "org/Llama" || flag("--protocol") != "openai" {
		t.Errorf("Args = %q; want --upstream-model org/Llama and --protocol openai before --", args)
	}
	if dash < 0 || !slices.Equal(args[dash+1:], s.Command) {
		t.Errorf("Args = %q; want the command last, after --", args)
	}
	if args := Args(SpecFor("d", serving.Spec{Engine: "http", URL: "http://127.0.0.1:1"})); slices.Contains(args, "--protocol") || slices.Contains(args, "--upstream-model") {
		t.Errorf("Args without protocol or upstream model = %q; want neither flag", args)
	}
}

func TestArgsCarryPythonWorkers(t *testing.T) {
	py := &serving.Python{Class: "model.py:Model", Workers: 3}
	args := Args(Spec{ID: "d-1", Deployment: "d", Model: "/m", Engine: "python", Python: py})
	if i := slices.Index(args, "--python-workers"); i < 0 || i+1 >= len(args) || args[i+1] != "3" {
		t.Errorf("Args = %q; want --python-workers 3", args)
	}
	py.Workers = 0
	if args := Args(Spec{ID: "d-1", Deployment: "d", Model: "/m", Engine: "python", Python: py}); slices.Contains(args, "--python-workers") {
		t.Errorf("Args without workers = %q; want no --python-workers (the replica's default)", args)
	}
}
