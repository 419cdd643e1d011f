package monitor

import "fmt"

// UnmarshalText reads a status by its name, so clients can decode a
// Report.
func (s *Status) UnmarshalText(b []byte) error {
	for _, st := range []Status{StatusUnknown, StatusOK, StatusWarn, StatusDrift} {
		if st.String() == string(b) {
			*s = st
			return nil
		}
	}
	return fmt.Errorf("unknown drift status %q: want unknown, ok, warn or drift", b)
}
