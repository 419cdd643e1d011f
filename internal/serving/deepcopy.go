package serving

import "github.com/ebb-ml/ebb/internal/oip"

// Deep copies of the types that hold time.Time, which controller-gen cannot
// copy; the rest are in zz_generated.deepcopy.go.

// DeepCopyInto copies s into out.
func (s *Status) DeepCopyInto(out *Status) {
	*out = *s
	if s.LastScaleTime != nil {
		t := *s.LastScaleTime
		out.LastScaleTime = &t
	}
	if m := s.Metadata; m != nil {
		c := *m
		c.Versions = append([]string(nil), m.Versions...)
		c.Inputs = copyTensors(m.Inputs)
		c.Outputs = copyTensors(m.Outputs)
		out.Metadata = &c
	}
	if s.ReplicaStatuses != nil {
		out.ReplicaStatuses = make([]ReplicaStatus, len(s.ReplicaStatuses))
		for i := range s.ReplicaStatuses {
			s.ReplicaStatuses[i].DeepCopyInto(&out.ReplicaStatuses[i])
		}
	}
	if s.Ignored != nil {
		out.Ignored = append([]string(nil), s.Ignored...)
	}
	if s.Traffic != nil {
		out.Traffic = append([]TrafficStatus(nil), s.Traffic...)
	}
	if s.Schedule != nil {
		c := *s.Schedule
		if c.Next != nil {
			t := *c.Next
			c.Next = &t
		}
		out.Schedule = &c
	}
	if s.Pool != nil {
		c := *s.Pool
		c.Replicas = append([]string(nil), s.Pool.Replicas...)
		out.Pool = &c
	}
}

// DeepCopy returns a copy of s.
func (s *Status) DeepCopy() *Status {
	if s == nil {
		return nil
	}
	out := new(Status)
	s.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies r into out.
func (r *ReplicaStatus) DeepCopyInto(out *ReplicaStatus) {
	*out = *r
	if r.ColdStart != nil {
		out.ColdStart = append([]Phase(nil), r.ColdStart...)
		for i, ph := range r.ColdStart {
			if ph.CacheHit != nil {
				hit := *ph.CacheHit
				out.ColdStart[i].CacheHit = &hit
			}
		}
	}
}

// DeepCopyInto copies d into out.
func (d *Deployment) DeepCopyInto(out *Deployment) {
	*out = *d
	d.Spec.DeepCopyInto(&out.Spec)
	d.Status.DeepCopyInto(&out.Status)
}

func copyTensors(ts []oip.TensorMetadata) []oip.TensorMetadata {
	if ts == nil {
		return nil
	}
	out := make([]oip.TensorMetadata, len(ts))
	for i, t := range ts {
		out[i] = t
		out[i].Shape = append([]int64(nil), t.Shape...)
	}
	return out
}
