package pool

import "testing"

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"4096", 4096, false},
		{"512MiB", 512 << 20, false},
		{"512Mi", 512 << 20, false},
		{"1.5GiB", 3 << 29, false},
		{"2 Gi", 2 << 30, false},
		{"200MB", 200e6, false},
		{"10K", 10e3, false},
		{"64B", 64, false},
		{"", 0, true},
		{"-1MiB", 0, true},
		{"lots", 0, true},
		{"NaN", 0, true},
		{"1e30TiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseBytes(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseBytes(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB"},
		{512 << 20, "512 MiB"},
		{3 << 30, "3 GiB"},
		{-2048, "-2 KiB"},
	}
	for _, tt := range tests {
		if got := FormatBytes(tt.in); got != tt.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
