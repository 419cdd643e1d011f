package apiclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
)

// CreateToken creates a token; the answer holds its secret, which the
// server cannot show again. It needs scope admin.
func (c *Client) CreateToken(ctx context.Context, req api.TokenRequest) (api.CreatedToken, error) {
	var out api.CreatedToken
	_, err := c.doJSON(ctx, http.MethodPost, "/v1/tokens", "application/json", req, &out)
	return out, err
}

// ListTokens lists the tokens, without secrets.
func (c *Client) ListTokens(ctx context.Context) ([]auth.Token, error) {
	var out api.TokenList
	_, err := c.doJSON(ctx, http.MethodGet, "/v1/tokens", "", nil, &out)
	return out.Items, err
}

// RevokeToken deletes the token with id; it stops working at once on the
// server that answered and within auth.DefaultCacheTTL on others.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.doJSON(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), "", nil, nil)
	return err
}
