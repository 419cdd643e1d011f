package queue_test

import (
	"testing"

	"github.com/ebb-ml/ebb/internal/queue"
)

// TestWaiters: Done wakes every waiter of its id with the result it is
// given (or none), and no other id's; a withdrawn waiter is forgotten.
func TestWaiters(t *testing.T) {
	var ws queue.Waiters
	a1, stopA1 := ws.Wait("a")
	a2, stopA2 := ws.Wait("a")
	b, stopB := ws.Wait("b")
	c, stopC := ws.Wait("c")
	defer stopA1()
	defer stopA2()
	defer stopB()
	if ws.Len() != 3 {
		t.Fatalf("Len = %d, want 3 ids", ws.Len())
	}
	stopC()
	if ws.Len() != 2 {
		t.Fatalf("Len = %d after withdrawing c, want 2", ws.Len())
	}
	if a1.Result() != nil {
		t.Fatal("a result before Done")
	}
	res := &queue.Result{Status: 200, Body: []byte("ok")}
	ws.Done("a", res)
	for i, w := range []*queue.Waiter{a1, a2} {
		select {
		case <-w.Done():
		default:
			t.Fatalf("waiter %d of a not woken", i)
		}
		if w.Result() != res {
			t.Errorf("waiter %d of a got %v, want the result given", i, w.Result())
		}
	}
	select {
	case <-b.Done():
		t.Fatal("b woken by a's result")
	default:
	}
	ws.Done("b", nil) // stored elsewhere: read the queue
	<-b.Done()
	if b.Result() != nil {
		t.Errorf("b got %v from a Done without a result", b.Result())
	}
	select {
	case <-c.Done():
		t.Error("a withdrawn waiter was woken")
	default:
	}
	var none *queue.Waiter
	if none.Result() != nil {
		t.Error("a nil Waiter has a result")
	}
}
