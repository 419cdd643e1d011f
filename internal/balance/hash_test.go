package balance

import (
	"hash/fnv"
	"math"
	"testing"
)

// TestHashKeyFixed pins the hash: gateways of different versions, during
// an upgrade, must send a key to the same replica.
func TestHashKeyFixed(t *testing.T) {
	tests := []struct {
		key  string
		want uint64
	}{
		{"", 0xefd01f60ba992926},
		{"a", 0x82a2a958a9bece5b},
		{"X-Session", 0x5df776965f29aba9},
		{"user-42", 0xa39532c7ab051e8d},
	}
	for _, tt := range tests {
		if got := HashKey(tt.key); got != tt.want {
			t.Errorf("HashKey(%q) = %#x, want %#x", tt.key, got, tt.want)
		}
		if got := HashKey([]byte(tt.key)); got != tt.want {
			t.Errorf("HashKey([]byte(%q)) = %#x, want %#x", tt.key, got, tt.want)
		}
		f := fnv.New64a()
		f.Write([]byte(tt.key))
		if got := mix(f.Sum64()); got != tt.want {
			t.Errorf("mix(FNV-1a(%q)) = %#x: HashKey is not FNV-1a then mix", tt.key, got)
		}
	}
}

func TestPrefixKey(t *testing.T) {
	const system = "You are a helpful assistant. "
	tests := []struct {
		name string
		a, b string
		n    int
		same bool
	}{
		{name: "shared prefix", a: system + "What is 2+2?", b: system + "Name a color.", n: len(system), same: true},
		{name: "differ within the prefix", a: "You are a pirate. Hi", b: "You are a parrot. Hi", n: 16, same: false},
		{name: "shorter than n is whole", a: "hello", b: "hello", n: 256, same: true},
		{name: "shorter than n differs", a: "hello", b: "hello!", n: 256, same: false},
		{name: "zero bytes", a: "x", b: "y", n: 0, same: true},
		{name: "negative n takes all", a: "xa", b: "xb", n: -1, same: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := PrefixKey(tt.a, tt.n), PrefixKey([]byte(tt.b), tt.n)
			if (ka == kb) != tt.same {
				t.Errorf("PrefixKey(%q, %d) = %#x, PrefixKey(%q, %d) = %#x; want same = %v", tt.a, tt.n, ka, tt.b, tt.n, kb, tt.same)
			}
		})
	}
	if got, want := PrefixKey("abcdef", 3), HashKey("abc"); got != want {
		t.Errorf("PrefixKey(abcdef, 3) = %#x, want HashKey(abc) = %#x", got, want)
	}
}

// TestHashKeyBits checks that the hash spreads keys that differ in one
// character: each output bit flips for about half of them.
func TestHashKeyBits(t *testing.T) {
	const n = 4096
	var flips [64]int
	for i := range n {
		a := HashKey([]byte{byte(i), byte(i >> 8), 'k'})
		b := HashKey([]byte{byte(i), byte(i >> 8), 'l'})
		for bit := range 64 {
			if (a^b)>>bit&1 == 1 {
				flips[bit]++
			}
		}
	}
	for bit, f := range flips {
		if p := float64(f) / n; math.Abs(p-0.5) > 0.05 {
			t.Errorf("bit %d flips for %.3f of one-character changes, want about 0.5", bit, p)
		}
	}
}
