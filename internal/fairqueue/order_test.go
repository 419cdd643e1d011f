package fairqueue

import (
	"strings"
	"testing"
)

// schedule drives a Queue's order without goroutines: it queues waiters
// and takes them in grant order, as dispatchLocked does.
type schedule struct {
	q      *Queue
	byName map[string][]*waiter // waiters of each "tenant/level", oldest first
}

func newSchedule(opts Options) *schedule {
	return &schedule{q: New(0, opts), byName: map[string][]*waiter{}}
}

// push queues one request of tenant at prio.
func (s *schedule) push(t *testing.T, tenant string, prio Priority) {
	t.Helper()
	w := &waiter{ready: make(chan struct{})}
	if err := s.q.pushLocked(w, tenant, prio); err != nil {
		t.Fatalf("push %s/%s: %v", tenant, prio, err)
	}
	k := tenant + "/" + prio.String()
	s.byName[k] = append(s.byName[k], w)
}

// next takes the next waiter and names it "tenant" (Interactive) or
// "tenant/batch"; "" when none waits.
func (s *schedule) next(t *testing.T) string {
	t.Helper()
	w := s.q.nextLocked()
	if w == nil {
		return ""
	}
	for k, ws := range s.byName {
		for i, x := range ws {
			if x == w {
				s.byName[k] = append(ws[:i:i], ws[i+1:]...)
				return strings.TrimSuffix(k, "/interactive")
			}
		}
	}
	t.Fatal("nextLocked returned a waiter nobody queued")
	return ""
}

// cancel takes the oldest waiter of tenant at prio out, as a request
// that gives up does.
func (s *schedule) cancel(t *testing.T, tenant string, prio Priority) {
	t.Helper()
	k := tenant + "/" + prio.String()
	ws := s.byName[k]
	if len(ws) == 0 {
		t.Fatalf("cancel %s: none waits", k)
	}
	s.q.removeLocked(ws[0])
	s.byName[k] = ws[1:]
}

// TestOrder checks the grant order exactly. Steps: "+a" queues one
// interactive request of tenant a, "+a/batch" a batch one, "-a" cancels
// a's oldest interactive request, and "=a b" expects the next grants.
func TestOrder(t *testing.T) {
	tests := []struct {
		name   string
		weight map[string]int
		steps  []string
	}{
		{
			name:  "round robin over tenants",
			steps: []string{"+a", "+a", "+a", "+b", "+b", "+c", "=a b c a b a", "="},
		},
		{
			name:  "one tenant alone is first come first served",
			steps: []string{"+a", "+a", "=a", "+a", "=a a", "="},
		},
		{
			name:  "a newcomer joins the current round, behind the tenants still in it and ahead of those that used their turn",
			steps: []string{"+a", "+a", "+b", "+b", "=a", "+c", "=b c a b", "="},
		},
		{
			name:  "beside a flood, a tenant that sends now and then is next",
			steps: []string{"+f", "+f", "+f", "+f", "=f", "+s", "=s f", "+s", "=s f f", "="},
		},
		{
			name:  "interactive before batch, whoever came first",
			steps: []string{"+a/batch", "+a/batch", "+b/batch", "+c", "+c", "=c c a/batch b/batch a/batch", "="},
		},
		{
			name:  "a tenant's levels are separate lanes",
			steps: []string{"+a/batch", "+a", "+b", "=a b a/batch", "="},
		},
		{
			name:  "cancelling the tenant whose turn it is passes the turn",
			steps: []string{"+a", "+b", "+c", "-a", "=b c", "="},
		},
		{
			name:  "cancelling one of a tenant's requests keeps its turn",
			steps: []string{"+a", "+a", "+a", "+b", "-a", "=a b a", "="},
		},
		{
			name:   "weights share the grants",
			weight: map[string]int{"a": 3},
			steps:  []string{"+a", "+a", "+a", "+a", "+b", "+b", "=a a a b a b", "="},
		},
		{
			name:   "a weight is clamped to 1..MaxWeight",
			weight: map[string]int{"a": -5, "b": 1 << 20},
			steps:  []string{"+a", "+a", "+b", "+b", "+b", "=a b b b a", "="},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts Options
			if tt.weight != nil {
				opts.Weight = func(tenant string) int { return tt.weight[tenant] }
			}
			s := newSchedule(opts)
			for _, step := range tt.steps {
				arg := step[1:]
				tenant, level, _ := strings.Cut(arg, "/")
				prio, err := ParsePriority(level)
				if err != nil && step[0] != '=' {
					t.Fatal(err)
				}
				switch step[0] {
				case '+':
					s.push(t, tenant, prio)
				case '-':
					s.cancel(t, tenant, prio)
				case '=':
					want := strings.Fields(arg)
					var got []string
					for range max(len(want), 1) {
						if n := s.next(t); n != "" {
							got = append(got, n)
						}
					}
					if g, w := strings.Join(got, " "), strings.Join(want, " "); g != w {
						t.Fatalf("step %q: granted %q; want %q", step, g, w)
					}
				}
			}
			if d := s.q.Depth(); d != 0 || len(s.q.tenants) != 0 {
				t.Errorf("after every grant: depth %d, %d tenants kept; want none", d, len(s.q.tenants))
			}
		})
	}
}

// FuzzOrder runs any mix of pushes, cancels and grants over four tenants,
// two levels and weights 1..3, and checks the invariants: the depth counts
// the waiters; a grant goes to the highest level with a waiter and to its
// lane's oldest; and a tenant that waits at a level is granted within the
// other tenants' weights in grants at that level (no starvation).
func FuzzOrder(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 0x80, 0x80, 0x40, 0x80})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 1, 0x80, 0x80, 0x80, 2, 0x80, 0x80, 0x80, 0x80, 0x80})
	f.Add([]byte{9, 1, 0x41, 0x80, 3, 0x43, 0x80, 0x80, 0x0f, 0x80})
	names := []string{"a", "b", "c", "d"}
	weight := map[string]int{"a": 1, "b": 2, "c": 3, "d": 1}
	f.Fuzz(func(t *testing.T, ops []byte) {
		q := New(0, Options{Weight: func(tenant string) int { return weight[tenant] }, MaxQueuePerTenant: 64, MaxQueue: 128})
		var queued [levels]map[string][]*waiter
		// waited counts the grants at a level to others since a tenant
		// last got one there while it waited; it must stay within the
		// other tenants' weights.
		var waited [levels]map[string]int
		for i := range levels {
			queued[i], waited[i] = map[string][]*waiter{}, map[string]int{}
		}
		total := 0
		for _, op := range ops {
			name, prio := names[op&3], Priority(op>>2&1)
			switch op >> 6 {
			case 0: // push
				w := &waiter{ready: make(chan struct{})}
				if q.pushLocked(w, name, prio) != nil {
					continue
				}
				queued[prio][name] = append(queued[prio][name], w)
				total++
			case 1: // cancel the newest
				ws := queued[prio][name]
				if len(ws) == 0 {
					continue
				}
				q.removeLocked(ws[len(ws)-1])
				queued[prio][name] = ws[:len(ws)-1]
				if len(ws) == 1 {
					delete(waited[prio], name)
				}
				total--
			default: // grant
				w := q.nextLocked()
				if total == 0 {
					if w != nil {
						t.Fatal("nextLocked granted from an empty queue")
					}
					continue
				}
				level := Interactive
				if allEmpty(queued[Interactive]) {
					level = Batch
				}
				got := ""
				for n, ws := range queued[level] {
					if len(ws) > 0 && ws[0] == w {
						got = n
					}
				}
				if got == "" {
					t.Fatalf("granted a waiter that is not the oldest of a lane at level %s", level)
				}
				queued[level][got] = queued[level][got][1:]
				total--
				for n, ws := range queued[level] {
					switch {
					case n == got || len(ws) == 0:
						waited[level][n] = 0
					default:
						if waited[level][n]++; waited[level][n] > sumWeights(weight)-weight[n] {
							t.Fatalf("tenant %s waited %d grants at level %s", n, waited[level][n], level)
						}
					}
				}
			}
			if q.Depth() != total {
				t.Fatalf("Depth = %d; %d wait", q.Depth(), total)
			}
		}
	})
}

func allEmpty(m map[string][]*waiter) bool {
	for _, ws := range m {
		if len(ws) > 0 {
			return false
		}
	}
	return true
}

func sumWeights(w map[string]int) int {
	n := 0
	for _, v := range w {
		n += v
	}
	return n
}
