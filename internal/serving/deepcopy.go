package serving

// Deep copies of the types that hold time.Time, which controller-gen cannot
// copy; the rest are in zz_generated.deepcopy.go.

// DeepCopyInto copies s into out.
func (s *Status) DeepCopyInto(out *Status) {
	*out = *s
	if s.LastScaleTime != nil {
		t := *s.LastScaleTime
		out.LastScaleTime = &t
	}
	if s.ReplicaStatuses != nil {
		out.ReplicaStatuses = make([]ReplicaStatus, len(s.ReplicaStatuses))
		for i := range s.ReplicaStatuses {
			s.ReplicaStatuses[i].DeepCopyInto(&out.ReplicaStatuses[i])
		}
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
	}
}

// DeepCopyInto copies d into out.
func (d *Deployment) DeepCopyInto(out *Deployment) {
	*out = *d
	d.Spec.DeepCopyInto(&out.Spec)
	d.Status.DeepCopyInto(&out.Status)
}
