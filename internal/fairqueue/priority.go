package fairqueue

import "fmt"

// Priority is a request's priority level. A freed slot goes to the highest
// level with a waiter; levels do not share slots fairly, they are strict.
type Priority uint8

// Priority levels, highest first. The zero value is Interactive, so a
// request that names no priority is served as interactive.
const (
	// Interactive is for requests a person or service waits on.
	Interactive Priority = iota
	// Batch is for work that can wait: batch jobs, async inference.
	Batch

	levels = int(Batch) + 1
)

// String returns the level's name, as ParsePriority reads it.
func (p Priority) String() string {
	switch p {
	case Interactive:
		return "interactive"
	case Batch:
		return "batch"
	}
	return fmt.Sprintf("Priority(%d)", uint8(p))
}

// ParsePriority reads a level's name: "interactive" or "batch"; "" is
// Interactive.
func ParsePriority(s string) (Priority, error) {
	switch s {
	case "", "interactive":
		return Interactive, nil
	case "batch":
		return Batch, nil
	}
	return 0, fmt.Errorf("unknown priority %q: use interactive or batch", s)
}
