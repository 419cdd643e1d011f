package serving

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// TrafficTarget is one model version of a deployment that serves several at
// once, and its share of the requests.
type TrafficTarget struct {
	// Model is a registry version ("diabetes:4", "diabetes@challenger")
	// or an artifact path. The target whose model is spec.model is the
	// primary: its replicas are the deployment's own.
	Model string `json:"model"`
	// Weight is the percent of requests the target gets; the weights of
	// all targets sum to 100. A request that pins a target (header
	// Ebb-Version) reaches it whatever its weight, 0 included.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight"`
	// Tag names the target: the value of the Ebb-Version header that pins
	// a request to it, and part of its replicas' names. Default: "v4" for
	// the registry version diabetes:4, the alias for diabetes@challenger,
	// and "t" and 8 hex digits of a hash for an artifact path.
	// +optional
	// +kubebuilder:validation:MaxLength=20
	Tag string `json:"tag,omitempty"`
}

// MaxTrafficTargets bounds spec.traffic.
const MaxTrafficTargets = 8

// TrackSep joins a deployment's name and a traffic target's tag into the
// name of the target's track ("diabetes.v4"): the control loop's and the
// routing table's name for the target's replicas. Deployment names cannot
// contain it, so a track never collides with a deployment.
const TrackSep = "."

// Track is one traffic target as the control loop and the data plane see
// it: a set of replicas of their own, scaled on their own share.
type Track struct {
	// Key is the name the loop and the routing table know the track by:
	// the deployment's name for the primary, else name.tag.
	Key string
	// Tag is the target's tag (given or derived).
	Tag string
	// Model is what the track serves.
	Model string
	// Weight is the track's percent of requests.
	Weight int32
	// Primary is set for the target whose model is spec.model.
	Primary bool
}

// Tracks returns the tracks of deployment name, the primary first and the
// others in spec order; nil when the spec has no traffic split. The spec
// must be valid.
func (s *Spec) Tracks(name string) []Track {
	if len(s.Traffic) == 0 {
		return nil
	}
	out := make([]Track, 0, len(s.Traffic))
	for _, t := range s.Traffic {
		tr := Track{Key: name, Tag: t.tag(), Model: t.Model, Weight: t.Weight, Primary: t.Model == s.Model}
		if !tr.Primary {
			tr.Key = name + TrackSep + tr.Tag
			out = append(out, tr)
			continue
		}
		out = append([]Track{tr}, out...)
	}
	return out
}

// ForTrack returns the spec a track's replicas run: s with its model, and
// without the split.
func (s Spec) ForTrack(t Track) Spec {
	s.Traffic = nil
	if t.Primary {
		return s
	}
	_, wasRef := ParseModelRef(s.Model)
	_, isRef := ParseModelRef(t.Model)
	if wasRef && !isRef && s.Engine == "" {
		s.Engine = DefaultEngine // a path carries no engine of its own
	}
	s.Model = t.Model
	s.Shadow = nil
	return s
}

// ParentOf returns the deployment a track key belongs to: key itself for a
// deployment or a primary, the part before TrackSep otherwise.
func ParentOf(key string) string {
	name, _, _ := strings.Cut(key, TrackSep)
	return name
}

// tag returns t's tag, derived from its model when not given.
func (t TrafficTarget) tag() string {
	if t.Tag != "" {
		return t.Tag
	}
	if ref, ok := ParseModelRef(t.Model); ok {
		if ref.Alias != "" {
			return clipTag(ref.Alias)
		}
		return fmt.Sprintf("v%d", ref.Version)
	}
	sum := sha256.Sum256([]byte(t.Model))
	return "t" + hex.EncodeToString(sum[:4])
}

// clipTag shortens a derived tag to the longest a tag may be.
func clipTag(s string) string {
	if len(s) <= maxTag {
		return s
	}
	return strings.TrimRight(s[:maxTag], "-")
}

const maxTag = 20

var tagRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// validateTraffic checks spec.traffic: every target once, the primary among
// them, weights that sum to 100, tags that are unique names.
func (s *Spec) validateTraffic() []*FieldError {
	if len(s.Traffic) == 0 {
		return nil
	}
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, args...)})
	}
	if len(s.Traffic) > MaxTrafficTargets {
		add("spec.traffic", "has %d targets; at most %d versions can share a deployment", len(s.Traffic), MaxTrafficTargets)
	}
	var sum int32
	primary := 0
	models, tags := map[string]bool{}, map[string]bool{}
	for i, t := range s.Traffic {
		field := fmt.Sprintf("spec.traffic[%d]", i)
		switch {
		case strings.TrimSpace(t.Model) == "":
			add(field+".model", "is required: a registry version such as diabetes:4, or an artifact path")
		case models[t.Model]:
			add(field+".model", "%q is listed twice: give each version once", t.Model)
		}
		models[t.Model] = true
		if t.Model == s.Model {
			primary++
		}
		if t.Weight < 0 || t.Weight > 100 {
			add(field+".weight", "must be between 0 and 100, got %d", t.Weight)
		}
		sum += t.Weight
		if t.Tag != "" && (len(t.Tag) > maxTag || !tagRE.MatchString(t.Tag)) {
			add(field+".tag", "%q must be at most %d lowercase letters, digits or '-', starting with a letter", t.Tag, maxTag)
			continue
		}
		tag := t.tag()
		if tag == ShadowTag {
			add(field+".tag", "%q is the shadow's track (spec.shadow): give the target another tag", tag)
		}
		if tags[tag] {
			add(field+".tag", "%q names two targets: give each a tag of its own", tag)
		}
		tags[tag] = true
	}
	if primary == 0 && strings.TrimSpace(s.Model) != "" {
		add("spec.traffic", "must list spec.model (%q), the primary, with its weight", s.Model)
	}
	if sum != 100 {
		add("spec.traffic", "weights sum to %d; they must sum to 100", sum)
	}
	return errs
}

// TrafficStatus is one traffic target as observed: what it serves and how
// many replicas it runs.
type TrafficStatus struct {
	// Tag names the target (given or derived).
	Tag string `json:"tag"`
	// Model is the target's spec model; ModelVersion the registry version
	// it resolved to, if any.
	Model string `json:"model"`
	// +optional
	ModelVersion string `json:"modelVersion,omitempty"`
	// Weight is the target's percent of requests.
	Weight int32 `json:"weight"`
	// Primary is set for spec.model's target.
	// +optional
	Primary bool `json:"primary,omitempty"`
	// Replicas, ReadyReplicas and DesiredReplicas count the target's own
	// replicas, as in Status.
	Replicas        int32 `json:"replicas"`
	ReadyReplicas   int32 `json:"readyReplicas"`
	DesiredReplicas int32 `json:"desiredReplicas"`
	// Reason explains the target's latest scaling decision or failure.
	// +optional
	Reason string `json:"reason,omitempty"`
}
