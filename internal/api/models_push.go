package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/registry"
)

// push handles POST /v1/models/{name}/versions: a multipart upload or a
// JSON body naming a stored artifact (see the route list in models.go).
func (m *modelRoutes) push(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := checkContentType(r, "multipart/form-data", "application/json"); err != nil {
		m.h.writeError(w, r, err)
		return
	}
	var md PushMetadata
	req := registry.PushRequest{Model: name}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		tmp, err := os.MkdirTemp("", "ebb-upload-")
		if err != nil {
			m.h.writeError(w, r, err)
			return
		}
		defer os.RemoveAll(tmp)
		path, err := receiveUpload(w, r, tmp, &md)
		if err != nil {
			m.h.writeError(w, r, err)
			return
		}
		req.Path = path
	} else {
		if err := readJSON(w, r, "push metadata", &md); err != nil {
			m.h.writeError(w, r, err)
			return
		}
		if md.ArtifactURI == "" || md.SHA256 == "" {
			m.h.writeError(w, r, &apiError{http.StatusBadRequest, codeModelInvalid,
				"a JSON push names a stored artifact with artifactURI and sha256; to upload a model send multipart/form-data (`ebb models push` does)"})
			return
		}
		req.ArtifactURI, req.SHA256, req.Packaging = md.ArtifactURI, md.SHA256, md.Packaging
	}
	if err := checkPushExec(r.Context(), md, req.Path); err != nil {
		m.h.writeError(w, r, err)
		return
	}
	req.Engine, req.Entry, req.Signature, req.Lineage = md.Engine, md.Entry, md.Signature, md.Lineage
	req.Tags, req.Alias, req.Description, req.CreatedBy = md.Tags, md.Alias, md.Description, md.CreatedBy
	// Push stores the artifact in the content-addressed artifact store
	// before it writes the registry (the version row, in one transaction).
	// When the registry write fails (store/unavailable, 503), no version
	// exists, but the blob may stay behind. That is harmless garbage: it is
	// stored under its own SHA-256, so a retried push of the same model
	// finds it in place and the version then references it. It is not
	// deleted here, since another version with the same content may
	// reference it and the unreachable store cannot tell us whether one
	// does. (Retirement deletes only the blobs of purged versions, so a
	// blob no version ever references stays until one does.)
	v, err := m.svc.Push(r.Context(), req)
	if err != nil {
		if v.Version > 0 { // the version exists; only the alias move failed
			m.h.log.Warn("pushed a model version but could not move its alias", "model", name, "version", v.Version, "err", err)
		}
		m.h.writeError(w, r, m.registryError(r, err, name, 0, nil))
		return
	}
	m.h.log.Info("model version pushed", "model", name, "version", v.Version, "engine", v.Engine, "sha256", v.SHA256)
	w.Header().Set("Location", "/v1/models/"+url.PathEscape(name)+"/versions/"+strconv.Itoa(v.Version))
	writeJSON(w, http.StatusCreated, v)
}

// receiveUpload reads a multipart push into dir: the "metadata" part into
// md, the "artifact" part to a file (extracted to a directory when
// md.Packaging is "tar"). It returns the local path of the model.
func receiveUpload(w http.ResponseWriter, r *http.Request, dir string, md *PushMetadata) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxArtifactBytes)
	mr, err := r.MultipartReader()
	if err != nil {
		return "", &apiError{http.StatusBadRequest, codeMalformed, "cannot read the multipart body: " + err.Error()}
	}
	var artifact string
	var gotMetadata bool
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", uploadError(err)
		}
		switch part.FormName() {
		case "metadata":
			data, err := io.ReadAll(io.LimitReader(part, maxBodyBytes+1))
			if err != nil {
				return "", uploadError(err)
			}
			if len(data) > maxBodyBytes {
				return "", &apiError{http.StatusRequestEntityTooLarge, codeTooLarge,
					fmt.Sprintf("the metadata part is larger than %d bytes", maxBodyBytes)}
			}
			if err := decodeStrict(data, "push metadata", md); err != nil {
				return "", err
			}
			gotMetadata = true
		case "artifact":
			base := filepath.Base(part.FileName())
			if base == "." || base == string(filepath.Separator) || !filepath.IsLocal(base) {
				base = "model"
			}
			if base == "extracted" {
				base = "extracted.tar"
			}
			artifact = filepath.Join(dir, "upload-"+base)
			f, err := os.Create(artifact)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(f, part)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return "", uploadError(err)
			}
			// Keep the uploaded name: engines name models after it.
			named := filepath.Join(dir, base)
			if err := os.Rename(artifact, named); err != nil {
				return "", err
			}
			artifact = named
		default:
			return "", &apiError{http.StatusBadRequest, codeMalformed,
				fmt.Sprintf("unknown multipart part %q: send \"metadata\" (JSON) and \"artifact\" (the model)", part.FormName())}
		}
	}
	if !gotMetadata || artifact == "" {
		return "", &apiError{http.StatusBadRequest, codeMalformed,
			"a multipart push needs a \"metadata\" part (JSON) and an \"artifact\" part (the model file or a tar of its directory)"}
	}
	if md.ArtifactURI != "" || md.SHA256 != "" {
		return "", &apiError{http.StatusBadRequest, codeModelInvalid, "an uploaded push must not name artifactURI or sha256: the server computes them"}
	}
	switch md.Packaging {
	case registry.PackagingFile:
		return artifact, nil
	case registry.PackagingTar:
		out := filepath.Join(dir, "extracted")
		if err := os.Mkdir(out, 0o755); err != nil {
			return "", err
		}
		f, err := os.Open(artifact)
		if err != nil {
			return "", err
		}
		defer f.Close()
		if err := registry.ExtractTar(f, out); err != nil {
			return "", &apiError{http.StatusBadRequest, codeModelInvalid, "the uploaded directory archive: " + err.Error()}
		}
		return out, nil
	}
	return "", &apiError{http.StatusBadRequest, codeModelInvalid,
		fmt.Sprintf("unknown packaging %q: use \"\" for a model file or \"tar\" for a directory", md.Packaging)}
}

// checkPushExec refuses, with 403 auth/forbidden, a push of code without
// the exec scope: a version of engine python is a class that replicas
// import, and a deployment that follows an alias runs the version the
// alias is moved to, with no deployment write that checkExec could see.
// So pushing one needs exec beside models:write; moving an alias to a
// version already pushed does not (whoever pushed it had exec).
//
// The engine is md.Engine, else the one the registry detects: python for
// a directory with .py files at its top (registry.detectEngine), which
// this checks in an upload (path, the uploaded model) before the
// registry does. A JSON push names a stored artifact this cannot look
// into: a directory there (packaging tar) without an engine is refused
// unless the token has exec.
func checkPushExec(ctx context.Context, md PushMetadata, path string) error {
	p, ok := auth.FromContext(ctx)
	if !ok || p.Can(auth.Exec, "").Allow {
		return nil
	}
	var why string
	switch {
	case strings.EqualFold(strings.TrimSpace(md.Engine), "python"):
		why = "pushing a python model (code that replicas import) needs scope exec"
	case md.Engine != "":
		return nil
	case path != "" && hasPython(path):
		why = "pushing a directory with Python files (detected as engine python: code that replicas import) needs scope exec"
	case path == "" && md.Packaging == registry.PackagingTar:
		why = "a stored directory artifact pushed without an engine may be detected as python, which needs scope exec: name the engine (--engine trees, onnx, ...)"
	default:
		return nil
	}
	return needExec(ctx, why)
}

// hasPython reports whether path is a directory with a regular .py file
// at its top, where the registry looks for one to detect engine python.
func hasPython(path string) bool {
	ents, err := os.ReadDir(path)
	if err != nil {
		return false // a file, not a directory
	}
	for _, e := range ents {
		if e.Type().IsRegular() && strings.EqualFold(filepath.Ext(e.Name()), ".py") {
			return true
		}
	}
	return false
}

func uploadError(err error) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return &apiError{http.StatusRequestEntityTooLarge, codeTooLarge,
			fmt.Sprintf("the upload is larger than %d bytes", int64(maxArtifactBytes))}
	}
	return &apiError{http.StatusBadRequest, codeMalformed, "cannot read the upload: " + err.Error()}
}
