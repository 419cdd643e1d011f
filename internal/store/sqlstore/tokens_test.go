package sqlstore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/auth/authtest"
)

func TestTokenStoreConformance(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		authtest.Run(t, func(t *testing.T) auth.TokenStore {
			return b.openT(t, b.newDB(t))
		})
	})
}

// TestTokenSecretNotStored creates a token and reads every column of the
// tokens table back raw: the secret appears nowhere, its hash does.
func TestTokenSecretNotStored(t *testing.T) {
	each(t, true, func(t *testing.T, b backend) {
		ctx := context.Background()
		where := b.newDB(t)
		s := b.openT(t, where)
		secret, tok, err := auth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		tok.Name, tok.Scopes = "ci", []string{"admin"}
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		_, sec, _ := auth.ParseToken(secret)
		rows, err := b.raw(t, where).Query(`SELECT id, name, hash, scopes, created_by FROM tokens`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var all strings.Builder
		for rows.Next() {
			var cols [5]string
			if err := rows.Scan(&cols[0], &cols[1], &cols[2], &cols[3], &cols[4]); err != nil {
				t.Fatal(err)
			}
			all.WriteString(strings.Join(cols[:], "|"))
		}
		if strings.Contains(all.String(), sec) {
			t.Errorf("the tokens table holds the secret: %s", all.String())
		}
		if !strings.Contains(all.String(), auth.HashSecret(sec)) {
			t.Errorf("the tokens table lacks the secret's hash: %s", all.String())
		}
	})
}
