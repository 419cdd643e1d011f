package serving

import "strings"

// ResourceGPU is the extended resource of a whole NVIDIA GPU; a MIG slice
// is nvidia.com/mig-<profile> (nvidia.com/mig-1g.10gb, ...).
const ResourceGPU ResourceName = "nvidia.com/gpu"

// isGPU reports whether name is a whole GPU or a MIG slice.
func isGPU(name ResourceName) bool {
	return name == ResourceGPU || strings.HasPrefix(string(name), "nvidia.com/mig-")
}

// GPUs returns the GPUs one replica of s asks for: the replica
// container's nvidia.com/gpu plus its MIG slices (nvidia.com/mig-*, each
// slice counted as one GPU), each resource from its limit, else its
// request. It is what GPU-hours and GPU-seconds are counted in: replicas
// × GPUs; 0 for a spec that asks for none.
func (s Spec) GPUs() int64 {
	r := s.Template.Resources
	var n int64
	for name, q := range r.Limits {
		if isGPU(name) {
			n += q.Value()
		}
	}
	for name, q := range r.Requests {
		if _, limited := r.Limits[name]; isGPU(name) && !limited {
			n += q.Value()
		}
	}
	return n
}
