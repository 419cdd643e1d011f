package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/store"
)

// API tokens (auth.TokenStore). Only a token's hash is kept, never its
// secret.

var _ auth.TokenStore = (*Store)(nil)

const tokenColumns = `id, name, hash, scopes, created_at, created_by, expires_at, tenant`

// CreateToken implements auth.TokenStore. The store sets CreatedAt unless
// it is set; ExpiresAt is kept to the microsecond.
func (s *Store) CreateToken(ctx context.Context, t auth.Token) error {
	if t.ID == "" || t.Hash == "" {
		return fmt.Errorf("create token: id and hash are required")
	}
	scopes, err := json.Marshal(t.Scopes)
	if err != nil {
		return fmt.Errorf("create token %s: encode scopes: %w", t.ID, err)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = s.now()
	}
	return s.insert(ctx, fmt.Sprintf("token %q", t.ID),
		`INSERT INTO tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, t.Hash, string(scopes), s.time(t.CreatedAt.UTC().Truncate(time.Microsecond)), t.CreatedBy,
		s.time(t.ExpiresAt.UTC().Truncate(time.Microsecond)), t.Tenant)
}

// GetToken implements auth.TokenStore.
func (s *Store) GetToken(ctx context.Context, id string) (auth.Token, error) {
	t, err := scanToken(s.read().row(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return auth.Token{}, fmt.Errorf("token %q %w", id, store.ErrNotFound)
	}
	return t, err
}

// ListTokens implements auth.TokenStore: every token, oldest first.
func (s *Store) ListTokens(ctx context.Context) ([]auth.Token, error) {
	return list(ctx, s.read(), scanToken, `SELECT `+tokenColumns+` FROM tokens ORDER BY created_at, id`)
}

// DeleteToken implements auth.TokenStore.
func (s *Store) DeleteToken(ctx context.Context, id string) error {
	res, err := s.exec(ctx, `DELETE FROM tokens WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete token %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("token %q %w", id, store.ErrNotFound)
	}
	return nil
}

func scanToken(sc scanner) (auth.Token, error) {
	var t auth.Token
	var scopes []byte
	if err := sc.Scan(&t.ID, &t.Name, &t.Hash, &scopes, timeCol(&t.CreatedAt), &t.CreatedBy, timeCol(&t.ExpiresAt), &t.Tenant); err != nil {
		return auth.Token{}, err
	}
	if err := json.Unmarshal(scopes, &t.Scopes); err != nil {
		return auth.Token{}, fmt.Errorf("decode scopes of token %s: %w", t.ID, err)
	}
	return t, nil
}
