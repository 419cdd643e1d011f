package monitor

// VersionReport is the drift report of one version a deployment serves:
// the version ("diabetes:3"), the profile it is judged against and its
// window's Report.
type VersionReport struct {
	Version string `json:"version"`
	// ProfileID identifies the reference profile (the SHA-256 of its
	// JSON); ProfileRows is the number of rows it was built from.
	ProfileID   string `json:"profileID,omitempty"`
	ProfileRows int    `json:"profileRows"`
	Report
}
