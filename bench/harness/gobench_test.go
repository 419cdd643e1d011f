package harness

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseGoBench(t *testing.T) {
	out := []byte(`goos: linux
goarch: amd64
pkg: github.com/ebb-ml/ebb/internal/gateway
BenchmarkStageAuth-2          	    2000	       264.5 ns/op	      96 B/op	       1 allocs/op
BenchmarkStageServer-16       	     500	     62758 ns/op	    3413 B/op	      47 allocs/op
BenchmarkNoMem                	      10	       100 ns/op
--- FAIL: BenchmarkBroken
PASS
`)
	want := []GoBench{
		{Name: "StageAuth", N: 2000, NsPerOp: 264.5, BytesPerOp: 96, AllocsPerOp: 1},
		{Name: "StageServer", N: 500, NsPerOp: 62758, BytesPerOp: 3413, AllocsPerOp: 47},
		{Name: "NoMem", N: 10, NsPerOp: 100},
	}
	if diff := cmp.Diff(want, parseGoBench(out)); diff != "" {
		t.Errorf("parseGoBench (-want +got):\n%s", diff)
	}
}

func TestBearerURL(t *testing.T) {
	u := BearerURL("http://127.0.0.1:8080/v2/models/m/infer", "ebb_id_secret")
	plain, tok := splitBearer(u)
	if plain != "http://127.0.0.1:8080/v2/models/m/infer" || tok != "ebb_id_secret" {
		t.Errorf("splitBearer(%q) = %q, %q; want the URL back and the token", u, plain, tok)
	}
	if plain, tok := splitBearer("http://127.0.0.1:8080/x"); plain != "http://127.0.0.1:8080/x" || tok != "" {
		t.Errorf("splitBearer of a URL without a token = %q, %q", plain, tok)
	}
}
