package gateway

import "testing"

// TestTakesBody checks which request targets the front server reads as
// inference bodies (the gateway's limits, the body timeout), and which as
// any other request (ReadTimeout, no size limit of its own).
func TestTakesBody(t *testing.T) {
	for _, tt := range []struct {
		uri  string
		want bool
	}{
		{"/v2/models/m/infer", true},
		{"/v2/models/m/versions/3/infer", true},
		{"/v2/models/m/infer?x=1", true},
		{"/v2/models/m", false},
		{"/v2/models/m/ready", false},
		{"/openai/v1/chat/completions", true},
		{"/openai/v1/anything", true},
		{"/v1/chat/completions", true},
		{"/v1/completions?stream=1", true},
		{"/v1/embeddings", true},
		{"/v1/models/m/versions", false}, // a model push: the admin API's
		{"/v1/deployments", false},
		{"/metrics", false},
	} {
		if got := takesBody([]byte(tt.uri)); got != tt.want {
			t.Errorf("takesBody(%q) = %v; want %v", tt.uri, got, tt.want)
		}
	}
}
