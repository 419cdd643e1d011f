package operator_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestEnsureTokenSecret runs the token bootstrap against the real
// apiserver and SQL store: the first call creates the token and the
// Secret, later ones (and concurrent replicas) keep them, and a revoked
// token is replaced in the same Secret.
func TestEnsureTokenSecret(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	cs := c.Clientset()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v := auth.NewVerifier(st, 0, nil)
	s := operator.TokenSecret{Namespace: ns, Name: "ebb-admin-token", TokenName: "admin", Scopes: []string{auth.ScopeAdmin}}
	token := func() string {
		t.Helper()
		sec, err := cs.CoreV1().Secrets(ns).Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(sec.Data[operator.TokenSecretKey])
	}

	// Three replicas start at once: one token wins, the others keep it.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { _, errs[i] = operator.EnsureTokenSecret(ctx, cs, st, v, s) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	first := token()
	p, err := v.Authenticate(ctx, first)
	if err != nil || !p.HasScope(auth.ScopeAdmin) {
		t.Fatalf("the Secret's token: %+v %v, want a valid admin token", p, err)
	}
	if toks, _ := st.ListTokens(ctx); len(toks) != 1 {
		t.Errorf("%d tokens in the store after three concurrent starts, want 1 (losers revoke theirs)", len(toks))
	}
	if created, err := operator.EnsureTokenSecret(ctx, cs, st, v, s); err != nil || created {
		t.Errorf("restart: created %v, %v; want the token kept", created, err)
	}
	if token() != first {
		t.Error("a restart changed the token")
	}

	// Revoked (or a new store): replaced in the same Secret.
	id, _, _ := auth.ParseToken(first)
	if err := st.DeleteToken(ctx, id); err != nil {
		t.Fatal(err)
	}
	v.Forget(id)
	if created, err := operator.EnsureTokenSecret(ctx, cs, st, v, s); err != nil || !created {
		t.Fatalf("after revocation: created %v, %v; want a new token", created, err)
	}
	if second := token(); second == first {
		t.Error("the Secret still holds the revoked token")
	} else if _, err := v.Authenticate(ctx, second); err != nil {
		t.Errorf("the new token: %v", err)
	}
}
