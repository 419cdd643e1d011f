package main

import (
	"strings"
	"testing"
)

func TestPoolDocs(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		names []string
		err   string
	}{
		{"one", "name: customers\nspec:\n  engine: trees\n  memoryBudget: 256MiB\n", []string{"customers"}, ""},
		{"two", "name: a\nspec: {engine: trees}\n---\nname: b\nspec: {engine: onnx}\n", []string{"a", "b"}, ""},
		{"json", `{"name":"a","spec":{"engine":"trees"}}`, []string{"a"}, ""},
		{"no name", "spec: {engine: trees}\n", nil, `document 1: name`},
		{"a manifest", "apiVersion: serving.ebb.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: a}\nspec: {engine: trees}\n", []string{"a"}, ""},
		{"manifest without spec", "kind: ModelPool\nmetadata: {name: a}\n", nil, "spec is required: the pool's engine"},
		{"another kind", "kind: ModelRoute\nmetadata: {name: a}\nspec: {}\n", nil, "kind ModelRoute is not a pool"},
		{"empty", "---\n", nil, "holds no pool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := poolDocs([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("poolDocs: %v, want an error containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, d := range docs {
				names = append(names, d.name)
			}
			if strings.Join(names, ",") != strings.Join(tt.names, ",") {
				t.Errorf("names %v, want %v", names, tt.names)
			}
		})
	}
}
