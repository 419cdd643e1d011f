package balance

// The hashes of a Ring are fixed functions, with no per-process seed
// (unlike hash/maphash's): every gateway, and every version of ebb, must
// map a key to the same point.

// HashKey returns the 64-bit hash of a routing key (a header's value, an
// input tensor's first element in its text form): FNV-1a, then a finalizer
// that spreads every input bit over the whole word. It allocates nothing.
func HashKey[K ~string | ~[]byte](key K) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := range len(key) {
		h ^= uint64(key[i])
		h *= prime
	}
	return mix(h)
}

// PrefixKey returns the HashKey of the first n bytes of prompt (all of it
// when it is shorter), for prefix affinity: prompts that share their first
// n bytes, such as a long system prompt, reach the same replica, where
// their KV cache is warm.
func PrefixKey[K ~string | ~[]byte](prompt K, n int) uint64 {
	if n >= 0 && n < len(prompt) {
		prompt = prompt[:n]
	}
	return HashKey(prompt)
}

// mix is the 64-bit finalizer of MurmurHash3 (fmix64).
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// golden is 2^64 divided by the golden ratio, SplitMix64's increment.
const golden = 0x9e3779b97f4a7c15

// jump returns the i-th point of the sequence seeded by h: SplitMix64's
// output for state h + (i+1)·golden. A Ring places an endpoint's virtual
// nodes with it, and rehashes a key whose endpoint is full.
func jump(h, i uint64) uint64 {
	z := h + (i+1)*golden
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
