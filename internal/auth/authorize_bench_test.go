package auth_test

import (
	"testing"

	"github.com/ebb-ml/ebb/internal/auth"
)

// BenchmarkAuthorize is the scope match every authenticated prediction
// runs: a token's predict scope against the deployment's name.
func BenchmarkAuthorize(b *testing.B) {
	for _, bc := range []struct{ name, scope, resource string }{
		{"name", "predict:fraud-eu", "fraud-eu"},
		{"glob", "predict:fraud-*", "fraud-eu"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			scopes := []string{bc.scope}
			for b.Loop() {
				if !auth.Authorize(scopes, auth.Predict, bc.resource).Allow {
					b.Fatal("refused")
				}
			}
		})
	}
}
