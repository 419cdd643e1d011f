package scenarios

import "testing"

func TestSameRow(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"r1,154.3458", "r1,154.3458", true},
		{"r1,154.3458", "r1,154.34580001", true}, // float32 text, read back as float64
		{"r1,154.3458", "r1,154.4", false},
		{"r1,1", "r2,1", false},   // another row
		{"r1,1,2", "r1,1", false}, // another width
		{"r1,x", "r1,x", false},   // not a number
		{"r1,0", "r1,0.000001", true},
	} {
		if got := sameRow(tt.a, tt.b); got != tt.want {
			t.Errorf("sameRow(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
