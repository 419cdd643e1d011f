package serving

// Deep copies of a job's spec and status, which hold time.Time (see
// deepcopy.go): the ModelJob custom resource embeds both.

// DeepCopyInto copies s into out.
func (s *JobSpec) DeepCopyInto(out *JobSpec) {
	*out = *s
	s.Input.DeepCopyInto(&out.Input)
	if s.Serving != nil {
		out.Serving = s.Serving.DeepCopy()
	}
	s.Lease.DeepCopyInto(&out.Lease)
}

// DeepCopy returns a copy of s.
func (s *JobSpec) DeepCopy() *JobSpec {
	if s == nil {
		return nil
	}
	out := new(JobSpec)
	s.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies s into out.
func (s *JobStatus) DeepCopyInto(out *JobStatus) {
	*out = *s
	out.BadRows = append([]string(nil), s.BadRows...)
	out.Warnings = append([]string(nil), s.Warnings...)
	out.Events = append([]JobEvent(nil), s.Events...)
	out.ETA = copyTime(s.ETA)
	out.StartedAt = copyTime(s.StartedAt)
	out.FinishedAt = copyTime(s.FinishedAt)
	if s.Plan != nil {
		p := *s.Plan
		out.Plan = &p
	}
	if s.Refusal != nil {
		r := *s.Refusal
		out.Refusal = &r
	}
	if s.Floor != nil {
		f := *s.Floor
		out.Floor = &f
	}
}

// DeepCopy returns a copy of s.
func (s *JobStatus) DeepCopy() *JobStatus {
	if s == nil {
		return nil
	}
	out := new(JobStatus)
	s.DeepCopyInto(out)
	return out
}

func copyTime[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}
