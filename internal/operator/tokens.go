package operator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/auth"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TokenVerifyPath is where gateways verify the tokens of inference
// requests (POST auth.VerifyRequest → auth.VerifyResponse); it needs scope
// gateway, as DemandPath and WakePath do when Options.Auth is set.
const TokenVerifyPath = "/ebb/v1/tokens/verify"

// GatewayAuth is how the operator checks the gateways that call it.
type GatewayAuth struct {
	// Authenticator verifies bearer tokens (the operator's token store).
	auth.Authenticator
	// Expiry returns the expiry of a verified token, for
	// TokenVerifyPath's answers; nil: none reported.
	Expiry func(ctx context.Context, tokenID string) time.Time
}

// TokenSecretKey is the key of a token Secret that holds the token.
const TokenSecretKey = "token"

// TokenSecret describes a token the operator keeps in a Secret: the admin
// token users read with kubectl, and the gateways' token, which the
// gateway pods get as an environment variable.
type TokenSecret struct {
	// Namespace and Name of the Secret; the token is under TokenSecretKey.
	Namespace, Name string
	// TokenName and Scopes are those of a token created for it.
	TokenName string
	Scopes    []string
}

// EnsureTokenSecret makes sure Secret s holds a token that verifies with
// v and has s.Scopes; it creates a token (in st) and the Secret only when
// the Secret is missing or its token no longer verifies (revoked, a new
// store). Every operator replica may call it at start: when two race, the
// Secret's resourceVersion decides, the loser revokes the token it made
// and keeps the winner's. It reports whether it created a token.
func EnsureTokenSecret(ctx context.Context, cs kubernetes.Interface, st auth.TokenStore, v auth.Authenticator, s TokenSecret) (bool, error) {
	secrets := cs.CoreV1().Secrets(s.Namespace)
	for attempt := 0; ; attempt++ {
		cur, err := secrets.Get(ctx, s.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			cur = nil
		case err != nil:
			return false, fmt.Errorf("read Secret %s/%s: %w", s.Namespace, s.Name, err)
		default:
			ok, err := holdsToken(ctx, v, cur, s.Scopes)
			if err != nil || ok {
				return false, err
			}
		}
		if attempt == 3 {
			return false, fmt.Errorf("Secret %s/%s keeps changing under this operator; retry", s.Namespace, s.Name)
		}
		secret, tok, err := auth.NewToken()
		if err != nil {
			return false, err
		}
		tok.Name, tok.Scopes, tok.CreatedBy = s.TokenName, s.Scopes, "ebb operator"
		tok.CreatedAt = time.Now().UTC()
		if err := st.CreateToken(ctx, tok); err != nil {
			return false, fmt.Errorf("create token %q: %w", s.TokenName, err)
		}
		data := map[string][]byte{TokenSecretKey: []byte(secret)}
		if cur == nil {
			sec := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace,
					Labels: map[string]string{"app.kubernetes.io/managed-by": "ebb-operator"}},
				Type: corev1.SecretTypeOpaque,
				Data: data,
			}
			_, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
		} else {
			cur = cur.DeepCopy()
			cur.Data = data
			_, err = secrets.Update(ctx, cur, metav1.UpdateOptions{})
		}
		if err == nil {
			return true, nil
		}
		// Lost a race with another replica, or failed: the token is not
		// in any Secret, so nobody can use it.
		_ = st.DeleteToken(context.WithoutCancel(ctx), tok.ID)
		if !apierrors.IsAlreadyExists(err) && !apierrors.IsConflict(err) {
			return false, fmt.Errorf("write Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
}

// holdsToken reports whether sec holds a token that verifies and has every
// scope in scopes; an error only when the token store cannot be asked.
func holdsToken(ctx context.Context, v auth.Authenticator, sec *corev1.Secret, scopes []string) (bool, error) {
	tok := strings.TrimSpace(string(sec.Data[TokenSecretKey]))
	if tok == "" {
		return false, nil
	}
	p, err := v.Authenticate(ctx, tok)
	if errors.Is(err, auth.ErrUnauthenticated) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check the token in Secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	for _, s := range scopes {
		if !p.HasScope(s) {
			return false, nil
		}
	}
	return true, nil
}
