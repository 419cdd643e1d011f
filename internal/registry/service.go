package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/store"
)

// ArtifactStore keeps model artifacts by content. internal/artifact
// implements it.
type ArtifactStore interface {
	// Put stores everything r yields and returns where it is, its SHA-256
	// (lowercase hex) and its size in bytes.
	Put(ctx context.Context, r io.Reader) (uri, sha256 string, size int64, err error)
	// Open returns the artifact at uri; reading it fails when its content
	// does not match sha256.
	Open(ctx context.Context, uri, sha256 string) (io.ReadCloser, error)
}

// ArtifactDeleter is implemented by artifact stores that can delete
// artifacts; retirement garbage-collects only through one. Deleting a
// missing artifact is not an error.
type ArtifactDeleter interface {
	Delete(ctx context.Context, uri string) error
}

// Validator loads the model at path with engine, as a replica would, and
// returns its signature. path is the model file, or for a directory
// artifact the extracted directory (joined with the version's Entry when
// it has one). Its error is the engine's message, shown to the user.
type Validator func(ctx context.Context, engine, path string) (Signature, error)

// Options configure a Service. The zero value works: no validation, the
// wall clock, no metrics, no logs.
type Options struct {
	// Validator, when set, checks at push time that the engine can load
	// the model and supplies its signature.
	Validator Validator
	// Now is the clock for times the service decides with; time.Now when
	// nil.
	Now func() time.Time
	// Metrics, when set, receives the retirement gauges and counters.
	Metrics *Metrics
	// Log receives retirement events; nil discards.
	Log *slog.Logger
	// OnAliasChange, when set, is called after an alias of model moved or
	// was deleted, so deployments that follow it can roll.
	OnAliasChange func(model string)
}

// Service is the registry's business logic over a Store and an
// ArtifactStore: pushes with validation, alias moves, resolution of
// references and retirement. It is safe for concurrent use.
type Service struct {
	st    Store
	art   ArtifactStore
	valid Validator
	now   func() time.Time
	met   *Metrics
	log   *slog.Logger

	onAlias func(model string)
}

// NewService returns a Service over st and art.
func NewService(st Store, art ArtifactStore, opts Options) *Service {
	s := &Service{st: st, art: art, valid: opts.Validator, now: opts.Now, met: opts.Metrics, log: opts.Log, onAlias: opts.OnAliasChange}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Store returns the store the service reads and writes.
func (s *Service) Store() Store { return s.st }

// PushRequest is one new version. Give the artifact either as Path (a local
// file or directory, stored through the ArtifactStore) or as ArtifactURI
// and SHA256 of an artifact already in the store.
type PushRequest struct {
	// Model is the model's name; the model is created when missing.
	Model string
	// Description is used when the push creates the model.
	Description string
	// Path is a local model file, or a directory stored as a tar archive.
	Path string
	// ArtifactURI, SHA256 and Packaging name an artifact already stored.
	ArtifactURI string
	SHA256      string
	Packaging   string
	// Entry is, for a directory, the file inside it that the engine loads;
	// detected for engines trees and onnx when empty.
	Entry string
	// Engine loads the model; detected from the file's extension when
	// empty (.json: trees, .onnx: onnx).
	Engine string
	// Signature is used when the validator reports none.
	Signature Signature
	Lineage   Lineage
	Tags      map[string]string
	CreatedBy string
	// Alias, when set, is moved to the new version.
	Alias string
}

// Push validates the artifact, stores it and records a new version,
// creating the model when needed; it moves req.Alias to the new version
// when set. An artifact the engine cannot load is an *InvalidError carrying
// the engine's message, and nothing is stored.
func (s *Service) Push(ctx context.Context, req PushRequest) (Version, error) {
	if err := ValidateName("model name", req.Model); err != nil {
		return Version{}, err
	}
	if req.Alias != "" {
		if err := ValidateName("alias", req.Alias); err != nil {
			return Version{}, err
		}
	}
	if (req.Path == "") == (req.ArtifactURI == "") {
		return Version{}, &InvalidError{"give either a local artifact path or the URI of a stored artifact, not both or neither"}
	}
	v := Version{Model: req.Model, Engine: req.Engine, Signature: req.Signature, Lineage: req.Lineage,
		Tags: req.Tags, CreatedBy: req.CreatedBy, Entry: req.Entry}

	local := req.Path
	if req.ArtifactURI != "" {
		if req.SHA256 == "" {
			return Version{}, &InvalidError{"artifact " + req.ArtifactURI + " needs its sha256"}
		}
		if req.Packaging != PackagingFile && req.Packaging != PackagingTar {
			return Version{}, &InvalidError{fmt.Sprintf("unknown packaging %q: use \"\" (a file) or %q", req.Packaging, PackagingTar)}
		}
		dir, err := os.MkdirTemp("", "ebb-push-")
		if err != nil {
			return Version{}, err
		}
		defer os.RemoveAll(dir)
		if local, v.Size, err = s.fetch(ctx, req.ArtifactURI, req.SHA256, req.Packaging, dir); err != nil {
			return Version{}, err
		}
		v.ArtifactURI, v.SHA256, v.Packaging = req.ArtifactURI, req.SHA256, req.Packaging
	}
	info, err := os.Stat(local)
	if err != nil {
		return Version{}, &InvalidError{fmt.Sprintf("cannot read the model at %s: %v", local, unwrapPathError(err))}
	}
	if info.IsDir() {
		v.Packaging = PackagingTar
	}
	if v.Engine == "" {
		if v.Engine, err = detectEngine(local, info.IsDir(), v.Entry); err != nil {
			return Version{}, err
		}
	}
	if info.IsDir() && v.Entry == "" {
		if v.Entry, err = detectEntry(local, v.Engine); err != nil {
			return Version{}, err
		}
	}
	loadPath := local
	if v.Entry != "" {
		if !info.IsDir() {
			return Version{}, &InvalidError{"an entry (" + v.Entry + ") is only for directory artifacts"}
		}
		if !filepath.IsLocal(v.Entry) {
			return Version{}, &InvalidError{fmt.Sprintf("entry %q must be a relative path inside the directory", v.Entry)}
		}
		loadPath = filepath.Join(local, filepath.FromSlash(v.Entry))
	}
	if s.valid != nil {
		sig, err := s.valid(ctx, v.Engine, loadPath)
		if err != nil {
			// Name files relative to the artifact: the local path may be a
			// server's temporary copy that means nothing to the user.
			base := local
			if !info.IsDir() {
				base = filepath.Dir(local)
			}
			msg := strings.ReplaceAll(err.Error(), base+string(filepath.Separator), "")
			return Version{}, &InvalidError{fmt.Sprintf("engine %s cannot load the model: %s", v.Engine, msg)}
		}
		if len(sig.Inputs) > 0 || len(sig.Outputs) > 0 {
			v.Signature = sig
		}
	}
	// Ask the store first: when it is down (store.ErrUnavailable) the push
	// fails before it uploads anything.
	_, err = s.st.GetModel(ctx, req.Model)
	newModel := errors.Is(err, store.ErrNotFound)
	if err != nil && !newModel {
		return Version{}, err
	}
	if req.ArtifactURI == "" {
		if v.ArtifactURI, v.SHA256, v.Size, err = s.put(ctx, local, info.IsDir()); err != nil {
			return Version{}, fmt.Errorf("store the artifact of model %q: %w", req.Model, artifactStoreError(err))
		}
	}
	if newModel {
		// A store that fails between this and CreateVersion leaves the
		// model without versions; pushing again fills it.
		if _, err := s.st.CreateModel(ctx, Model{Name: req.Model, Description: req.Description}); err != nil && !errors.Is(err, store.ErrExists) {
			return Version{}, err
		}
	}
	out, err := s.st.CreateVersion(ctx, v)
	if err != nil {
		return Version{}, err
	}
	if req.Alias != "" {
		if _, err := s.MoveAlias(ctx, req.Model, req.Alias, out.Version, AnyVersion, req.CreatedBy); err != nil {
			return out, fmt.Errorf("pushed %s but could not move alias %q to it: %w", out.Ref(), req.Alias, err)
		}
	}
	return out, nil
}

// fetch copies a stored artifact into dir (extracting a tar) and returns
// the path to load and the artifact's size.
func (s *Service) fetch(ctx context.Context, uri, sum, packaging, dir string) (string, int64, error) {
	rc, err := s.art.Open(ctx, uri, sum)
	if err != nil {
		return "", 0, &InvalidError{fmt.Sprintf("cannot open artifact %s: %v", uri, err)}
	}
	defer rc.Close()
	cr := &countingReader{r: rc}
	if packaging == PackagingTar {
		out := filepath.Join(dir, "model")
		if err := os.Mkdir(out, 0o755); err != nil {
			return "", 0, err
		}
		if err := ExtractTar(cr, out); err != nil {
			return "", 0, &InvalidError{fmt.Sprintf("artifact %s: %v", uri, err)}
		}
		// Read to the end so the digest is checked.
		if _, err := io.Copy(io.Discard, cr); err != nil {
			return "", 0, &InvalidError{fmt.Sprintf("artifact %s: %v", uri, err)}
		}
		return out, cr.n, nil
	}
	name := filepath.Join(dir, "model"+artifactExt(uri))
	f, err := os.Create(name)
	if err != nil {
		return "", 0, err
	}
	_, err = io.Copy(f, cr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, &InvalidError{fmt.Sprintf("artifact %s: %v", uri, err)}
	}
	return name, cr.n, nil
}

// artifactExt keeps a URI's file extension so engines that look at it
// still can.
func artifactExt(uri string) string {
	base := uri[strings.LastIndex(uri, "/")+1:]
	if i := strings.LastIndex(base, "."); i > 0 {
		return base[i:]
	}
	return ""
}

// put stores a local file, or a directory as a tar archive.
func (s *Service) put(ctx context.Context, local string, dir bool) (uri, sum string, size int64, err error) {
	if !dir {
		f, err := os.Open(local)
		if err != nil {
			return "", "", 0, err
		}
		defer f.Close()
		return s.art.Put(ctx, f)
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(WriteTar(pw, local))
	}()
	uri, sum, size, err = s.art.Put(ctx, pr)
	pr.CloseWithError(errors.New("artifact store stopped reading"))
	<-done
	return uri, sum, size, err
}

// artifactStoreError marks an upload the artifact store (S3, a volume)
// failed as the store being unavailable: the API answers 503, naming it,
// and nothing of the push was written. Errors reading the local copy and
// a cancelled request stay what they are.
func artifactStoreError(err error) error {
	if _, local := errors.AsType[*os.PathError](err); local || errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: the artifact store failed the upload: %w", store.ErrUnavailable, err)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func unwrapPathError(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return pe.Err
	}
	return err
}

// engineExts maps model file extensions to the engine that loads them.
var engineExts = map[string]string{".json": "trees", ".onnx": "onnx"}

func detectEngine(path string, dir bool, entry string) (string, error) {
	name := path
	if dir && entry != "" {
		name = entry
	}
	if e, ok := engineExts[strings.ToLower(filepath.Ext(name))]; ok && (!dir || entry != "") {
		return e, nil
	}
	if dir {
		ents, err := os.ReadDir(path)
		if err != nil {
			return "", err
		}
		found := map[string]bool{}
		for _, e := range ents {
			if e.Type().IsRegular() {
				ext := strings.ToLower(filepath.Ext(e.Name()))
				if ext == ".py" {
					found["python"] = true
				} else if eng, ok := engineExts[ext]; ok {
					found[eng] = true
				}
			}
		}
		if len(found) == 1 {
			for e := range found {
				return e, nil
			}
		}
	}
	return "", &InvalidError{fmt.Sprintf("cannot tell which engine loads %s: give the engine (--engine trees, onnx, python, ...)", path)}
}

// detectEntry finds the one model file in a directory for engines that
// load a file.
func detectEntry(dir, engine string) (string, error) {
	var exts []string
	for ext, e := range engineExts {
		if e == engine {
			exts = append(exts, ext)
		}
	}
	if len(exts) == 0 {
		return "", nil // the engine loads the directory
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var found []string
	for _, e := range ents {
		for _, ext := range exts {
			if e.Type().IsRegular() && strings.EqualFold(filepath.Ext(e.Name()), ext) {
				found = append(found, e.Name())
			}
		}
	}
	if len(found) != 1 {
		return "", &InvalidError{fmt.Sprintf("directory %s holds %d %s model files (%s): name the one to load (--entry FILE)",
			dir, len(found), engine, strings.Join(found, ", "))}
	}
	return found[0], nil
}

// CreateModel creates an empty model.
func (s *Service) CreateModel(ctx context.Context, m Model) (Model, error) {
	if err := ValidateName("model name", m.Name); err != nil {
		return Model{}, err
	}
	return s.st.CreateModel(ctx, m)
}

// MoveAlias points alias at version `to`, a compare-and-swap on expectFrom
// as Store.SetAlias describes (store.ErrConflict on mismatch). A warned or
// retired version becomes active again; a purged one cannot be aliased.
func (s *Service) MoveAlias(ctx context.Context, model, alias string, to, expectFrom int, by string) (AliasMove, error) {
	if err := ValidateName("alias", alias); err != nil {
		return AliasMove{}, err
	}
	if to < 1 {
		return AliasMove{}, &InvalidError{fmt.Sprintf("version %d does not exist: versions are numbered from 1", to)}
	}
	v, err := s.st.GetVersion(ctx, model, to)
	if err != nil {
		return AliasMove{}, err
	}
	if v.State == StatePurged {
		return AliasMove{}, &InvalidError{fmt.Sprintf("%s was retired and its artifact deleted: push the model again", v.Ref())}
	}
	move, err := s.st.SetAlias(ctx, model, alias, to, expectFrom, by)
	if err != nil {
		return AliasMove{}, err
	}
	s.aliasChanged(model)
	if err := s.reactivate(ctx, v); err != nil {
		return move, err
	}
	return move, nil
}

// DeleteAlias deletes an alias; expectFrom works as in MoveAlias.
func (s *Service) DeleteAlias(ctx context.Context, model, alias string, expectFrom int, by string) (AliasMove, error) {
	move, err := s.st.DeleteAlias(ctx, model, alias, expectFrom, by)
	if err == nil {
		s.aliasChanged(model)
	}
	return move, err
}

func (s *Service) aliasChanged(model string) {
	if s.onAlias != nil {
		s.onAlias(model)
	}
}

// reactivate makes a warned or retired version active.
func (s *Service) reactivate(ctx context.Context, v Version) error {
	if v.State != StateWarned && v.State != StateRetired {
		return nil
	}
	_, err := s.st.SetVersionState(ctx, v.Model, v.Version, v.State, StateActive, s.now())
	if errors.Is(err, store.ErrConflict) {
		return nil // changed meanwhile; the next retirement step sorts it out
	}
	if err == nil {
		s.met.transition(StateActive)
		s.log.Info("model version in use again", "model", v.Model, "version", v.Version, "was", v.State)
	}
	return err
}

// Resolve returns the version ref names: the alias's current version or
// the numbered version. Errors wrap store.ErrNotFound.
func (s *Service) Resolve(ctx context.Context, ref Ref) (Version, error) {
	n := ref.Version
	if ref.Alias != "" {
		a, err := s.st.GetAlias(ctx, ref.Model, ref.Alias)
		if err != nil {
			return Version{}, err
		}
		n = a.Version
	}
	return s.st.GetVersion(ctx, ref.Model, n)
}

// ResolveAll resolves many refs at once (Store.ResolveRefs): those that
// name nothing are not in the map.
func (s *Service) ResolveAll(ctx context.Context, refs []Ref) (map[Ref]Version, error) {
	return s.st.ResolveRefs(ctx, refs)
}

// ResolveString parses ref with ParseRef and resolves it; a string that is
// not a reference is an *InvalidError.
func (s *Service) ResolveString(ctx context.Context, ref string) (Version, error) {
	r, ok := ParseRef(ref)
	if !ok {
		return Version{}, &InvalidError{fmt.Sprintf("%q is not a model reference: write NAME:VERSION (diabetes:3) or NAME@ALIAS (diabetes@champion)", ref)}
	}
	return s.Resolve(ctx, r)
}

// RecordServing records that deployment serves model's version from now
// on (repeats are not recorded twice) and marks the version used: its
// LastUsedAt moves to now and, when warned or retired, it becomes active.
// The control loop calls it whenever a deployment has ready replicas of a
// version, as often as it likes.
func (s *Service) RecordServing(ctx context.Context, deployment, model string, version int) error {
	now := s.now()
	v, err := s.st.GetVersion(ctx, model, version)
	if err != nil {
		return err
	}
	if err := s.st.RecordServing(ctx, deployment, model, version, now); err != nil {
		return err
	}
	if err := s.st.TouchVersion(ctx, model, version, now); err != nil {
		return err
	}
	return s.reactivate(ctx, v)
}

// ServingHistory returns which versions served deployment when, oldest
// first (Store.ServingHistory).
func (s *Service) ServingHistory(ctx context.Context, deployment string) ([]ServingRecord, error) {
	return s.st.ServingHistory(ctx, deployment)
}
