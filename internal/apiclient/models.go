package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/registry"
)

func modelPath(name string) string { return "/v1/models/" + url.PathEscape(name) }

func aliasPath(name, alias string) string {
	return modelPath(name) + "/aliases/" + url.PathEscape(alias)
}

// ListModels returns one page of models sorted by name; page on with the
// result's Next as opts.After. opts.Limit 0 means the server's default.
func (c *Client) ListModels(ctx context.Context, opts registry.ListOptions) (api.ModelList, error) {
	q := url.Values{}
	if opts.Prefix != "" {
		q.Set("prefix", opts.Prefix)
	}
	if opts.After != "" {
		q.Set("after", opts.After)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	path := "/v1/models"
	path = withQuery(path, q)
	var out api.ModelList
	_, err := c.doJSON(ctx, http.MethodGet, path, "", nil, &out)
	return out, err
}

// CreateModel creates an empty model; code model/exists when taken.
func (c *Client) CreateModel(ctx context.Context, name, description string) (registry.Model, error) {
	var out registry.Model
	_, err := c.doJSON(ctx, http.MethodPost, "/v1/models", "application/json",
		api.CreateModelRequest{Name: name, Description: description}, &out)
	return out, err
}

// GetModel returns a model with its aliases.
func (c *Client) GetModel(ctx context.Context, name string) (api.ModelDetail, error) {
	var out api.ModelDetail
	_, err := c.doJSON(ctx, http.MethodGet, modelPath(name), "", nil, &out)
	return out, err
}

// ListVersions returns one page of a model's versions, oldest first,
// numbered above after; limit 0 means the server's default.
func (c *Client) ListVersions(ctx context.Context, name string, after, limit int) (api.VersionList, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.Itoa(after))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := modelPath(name) + "/versions"
	path = withQuery(path, q)
	var out api.VersionList
	_, err := c.doJSON(ctx, http.MethodGet, path, "", nil, &out)
	return out, err
}

// AllVersions returns every version of a model, oldest first.
func (c *Client) AllVersions(ctx context.Context, name string) ([]registry.Version, error) {
	var all []registry.Version
	after := 0
	for {
		page, err := c.ListVersions(ctx, name, after, 1000)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.Next == 0 {
			return all, nil
		}
		after = page.Next
	}
}

// GetVersion returns one version.
func (c *Client) GetVersion(ctx context.Context, name string, version int) (registry.Version, error) {
	var out registry.Version
	_, err := c.doJSON(ctx, http.MethodGet, modelPath(name)+"/versions/"+strconv.Itoa(version), "", nil, &out)
	return out, err
}

// PatchVersionTags sets tags (a nil value deletes the tag).
func (c *Client) PatchVersionTags(ctx context.Context, name string, version int, tags map[string]*string) (registry.Version, error) {
	var out registry.Version
	_, err := c.doJSON(ctx, http.MethodPatch, modelPath(name)+"/versions/"+strconv.Itoa(version),
		"application/merge-patch+json", map[string]any{"tags": tags}, &out)
	return out, err
}

// PushVersion uploads the model file or directory at path (a directory as
// a tar archive, with md.Packaging set to "tar") as a new version of name.
// The server validates it with the engine; code model/invalid carries the
// engine's message.
func (c *Client) PushVersion(ctx context.Context, name string, md api.PushMetadata, path string) (registry.Version, error) {
	info, err := os.Stat(path)
	if err != nil {
		return registry.Version{}, err
	}
	upload := filepath.Base(path)
	if info.IsDir() {
		md.Packaging = registry.PackagingTar
		upload += ".tar"
	} else {
		md.Packaging = registry.PackagingFile
	}
	meta, err := json.Marshal(md)
	if err != nil {
		return registry.Version{}, fmt.Errorf("encode push metadata: %w", err)
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		pw.CloseWithError(writePush(mw, meta, upload, path, info.IsDir()))
	}()
	defer pr.Close()
	method, rpath := http.MethodPost, modelPath(name)+"/versions"
	req, err := c.newRequest(ctx, method, rpath, pr)
	if err != nil {
		return registry.Version{}, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return registry.Version{}, &unreachableError{url: c.base, err: err}
		}
		return registry.Version{}, fmt.Errorf("%s %s at %s: %w", method, rpath, c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return registry.Version{}, fmt.Errorf("%s %s: read response from ebb at %s: %w", method, rpath, c.base, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return registry.Version{}, responseError(resp.StatusCode, b)
	}
	var out registry.Version
	if err := json.Unmarshal(b, &out); err != nil {
		return registry.Version{}, fmt.Errorf("%s %s: cannot decode the response from ebb at %s: %w", method, rpath, c.base, err)
	}
	return out, nil
}

// writePush writes the multipart body of a push: the metadata part, then
// the artifact part streamed from disk.
func writePush(mw *multipart.Writer, meta []byte, upload, path string, dir bool) error {
	mdw, err := mw.CreateFormField("metadata")
	if err != nil {
		return err
	}
	if _, err := mdw.Write(meta); err != nil {
		return err
	}
	fw, err := mw.CreateFormFile("artifact", upload)
	if err != nil {
		return err
	}
	if dir {
		if err := registry.WriteTar(fw, path); err != nil {
			return err
		}
	} else {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(fw, f); err != nil {
			return err
		}
	}
	return mw.Close()
}

// RegisterVersion records a new version of name for an artifact already in
// the artifact store (md.ArtifactURI and md.SHA256).
func (c *Client) RegisterVersion(ctx context.Context, name string, md api.PushMetadata) (registry.Version, error) {
	var out registry.Version
	_, err := c.doJSON(ctx, http.MethodPost, modelPath(name)+"/versions", "application/json", md, &out)
	return out, err
}

// ListAliases returns a model's aliases sorted by name.
func (c *Client) ListAliases(ctx context.Context, name string) ([]registry.Alias, error) {
	var out api.AliasList
	_, err := c.doJSON(ctx, http.MethodGet, modelPath(name)+"/aliases", "", nil, &out)
	return out.Items, err
}

// GetAlias returns one alias.
func (c *Client) GetAlias(ctx context.Context, name, alias string) (registry.Alias, error) {
	var out registry.Alias
	_, err := c.doJSON(ctx, http.MethodGet, aliasPath(name, alias), "", nil, &out)
	return out, err
}

// SetAlias points alias at version. When expect is not nil the move is a
// compare-and-swap: the alias must point at *expect now (0: must not
// exist), else the error has code alias/conflict (status 409).
func (c *Client) SetAlias(ctx context.Context, name, alias string, version int, expect *int, by string) (registry.AliasMove, error) {
	var out registry.AliasMove
	_, err := c.doJSON(ctx, http.MethodPut, aliasPath(name, alias), "application/json",
		api.AliasRequest{Version: version, ExpectedVersion: expect, UpdatedBy: by}, &out)
	return out, err
}

// DeleteAlias deletes an alias, recording by as who did; expect works as
// in SetAlias (0 is not allowed).
func (c *Client) DeleteAlias(ctx context.Context, name, alias string, expect *int, by string) error {
	path := aliasPath(name, alias)
	if by != "" {
		path += "?by=" + url.QueryEscape(by)
	}
	req, err := c.newRequest(ctx, http.MethodDelete, path, nil)
	if err != nil {
		return err
	}
	if expect != nil {
		req.Header.Set("If-Match", strconv.Quote(strconv.Itoa(*expect)))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return &unreachableError{url: c.base, err: err}
		}
		return fmt.Errorf("DELETE %s at %s: %w", aliasPath(name, alias), c.base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return responseError(resp.StatusCode, b)
	}
	return nil
}

// AliasHistory returns every move of an alias, oldest first.
func (c *Client) AliasHistory(ctx context.Context, name, alias string) ([]registry.AliasMove, error) {
	var out api.MoveList
	_, err := c.doJSON(ctx, http.MethodGet, aliasPath(name, alias)+"/history", "", nil, &out)
	return out.Items, err
}

// ServingHistory returns which model version served a deployment when,
// oldest first.
func (c *Client) ServingHistory(ctx context.Context, deployment string) ([]registry.ServingRecord, error) {
	var out api.ServingList
	_, err := c.doJSON(ctx, http.MethodGet, deploymentPath(deployment)+"/history", "", nil, &out)
	return out.Items, err
}
