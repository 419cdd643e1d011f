package home

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Sampler takes per-deployment sampling ratios; *predlog.Logger is one.
type Sampler interface {
	SetSampling(ratios map[string]float64)
}

// Sampling keeps a prediction log's sampling ratios in line with the
// deployments' spec.predictionLog: each change of a deployment (Set,
// Remove) or of them all (Replace) hands the Sampler the new ratios, of
// the deployments that log only, and nothing when nothing changed. In a
// cluster each gateway calls Set and Remove from its watch of the
// ModelDeployments; ebb up calls Sync when its admin API writes a
// deployment and Follow rereads them all. It is safe for concurrent use.
type Sampling struct {
	to Sampler

	// mu guards ratios, the ratios last handed to the Sampler, and lists
	// and synced: a list of every deployment (Follow) that began before a
	// deployment's last Sync must not undo it with what it read.
	mu     sync.Mutex
	ratios map[string]float64
	lists  uint64            // lists begun
	synced map[string]uint64 // name → lists begun at its last Sync
}

// NewSampling returns a Sampling for to, with no deployment logged.
func NewSampling(to Sampler) *Sampling {
	return &Sampling{to: to, ratios: map[string]float64{}, synced: map[string]uint64{}}
}

// Set takes deployment name's spec.predictionLog (nil: not logged).
func (s *Sampling) Set(name string, p *serving.PredictionLog) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setLocked(name, p)
}

func (s *Sampling) setLocked(name string, p *serving.PredictionLog) {
	r := p.Ratio()
	old, had := s.ratios[name]
	switch {
	case r <= 0 && !had, r > 0 && had && old == r:
		return
	case r <= 0:
		delete(s.ratios, name)
	default:
		s.ratios[name] = r
	}
	s.publishLocked()
}

// Remove forgets deployment name: it is deleted.
func (s *Sampling) Remove(name string) { s.Set(name, nil) }

// Replace takes every deployment's spec at once: those not in ds are no
// longer logged.
func (s *Sampling) Replace(ds []serving.Deployment) {
	s.replace(ds, s.beginList())
}

// beginList notes that a list of every deployment begins, and returns
// its number for replace.
func (s *Sampling) beginList() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists++
	return s.lists
}

// replace takes ds, the deployments that list number n read, except
// those synced since it began: their Sync read them later.
func (s *Sampling) replace(ds []serving.Deployment, n uint64) {
	m := map[string]float64{}
	for _, d := range ds {
		if r := d.Spec.PredictionLog.Ratio(); r > 0 {
			m[d.Name] = r
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, at := range s.synced {
		switch {
		case at < n:
			delete(s.synced, name) // the list is newer
		case s.ratios[name] > 0:
			m[name] = s.ratios[name]
		default:
			delete(m, name)
		}
	}
	if maps.Equal(m, s.ratios) {
		return
	}
	s.ratios = m
	s.publishLocked()
}

// Ratios returns a copy of the ratios in effect.
func (s *Sampling) Ratios() map[string]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.ratios)
}

// publishLocked hands the Sampler the ratios (it copies them).
func (s *Sampling) publishLocked() { s.to.SetSampling(s.ratios) }

// DeploymentGetter reads a home's deployments: ebb up's SQL store.
type DeploymentGetter interface {
	DeploymentLister
	GetDeployment(ctx context.Context, name string) (serving.Deployment, error)
}

// Sync rereads deployment name from st and takes its spec (or its
// deletion): ebb up calls it when its admin API wrote the deployment,
// before answering, so that the request after `ebb deploy` is sampled as
// the new spec says.
func (s *Sampling) Sync(ctx context.Context, st DeploymentGetter, name string) error {
	d, err := st.GetDeployment(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("prediction log sampling of %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.synced[name] = s.lists
	if err != nil {
		s.setLocked(name, nil) // deleted
	} else {
		s.setLocked(name, d.Spec.PredictionLog)
	}
	return nil
}

// Follow rereads every deployment from st now and then every `every`,
// until ctx ends, for the changes Sync was not told of (another ebb up
// sharing a PostgreSQL store). A failed read keeps the ratios and is
// passed to onErr. c defaults to the real clock.
func (s *Sampling) Follow(ctx context.Context, st DeploymentLister, every time.Duration, c clock.WithTicker, onErr func(error)) {
	if c == nil {
		c = clock.RealClock{}
	}
	t := c.NewTicker(every)
	defer t.Stop()
	for {
		n := s.beginList()
		if ds, err := st.ListDeployments(ctx); err == nil {
			s.replace(ds, n)
		} else if ctx.Err() == nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}
