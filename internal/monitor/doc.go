// Package monitor detects drift: how far the inputs and outputs a model
// version sees in production have moved from a reference sample, usually
// its training data.
//
// It has three parts, all pure and in memory:
//
//   - A Profile is the reference: per feature, fixed bins and the reference
//     share of each. A numeric feature is binned at the reference sample's
//     quantiles (Options.Bins, default 20) and keeps its mean and standard
//     deviation; a categorical one keeps the Options.TopValues most frequent
//     values (default 20) and an "other" bucket for the rest. BuildProfile
//     computes it from sample rows; it marshals to JSON so a registry
//     version can store it beside its artifact.
//   - A Window counts what one deployment × version sees, in the profile's
//     bins, over a sliding window of Options.SubWindows sub-windows of
//     Options.SubWindow each (default 6 × 10 minutes); sub-windows rotate
//     by the injected clock. Observe does no allocation and costs the same
//     per feature at any width: one binary search over at most Bins-1
//     edges for a numeric feature, one map lookup for a categorical one,
//     under one mutex per row. A Monitor keys windows by deployment and
//     version.
//   - Window.Report scores each feature's window against the reference:
//     PSI for every feature, the two-sample Kolmogorov–Smirnov statistic
//     and the mean shift for numeric features, Pearson's chi-squared test
//     for categorical ones, and turns them into a Status with Thresholds.
//
// KS is computed from the binned CDFs, evaluated at the bin edges, so it
// never overstates the exact two-sample statistic D between the reference
// sample and the window's values, and understates it by at most
// FeatureScore.KSBound = max over bins of min(p, q) (p the reference share
// of the bin, q the window's): within a bin both CDFs are monotone, so
// their gap can exceed its value at the nearer edge by no more than the
// smaller of the two rises. With quantile bins p ≈ 1/Bins, so the bound is
// about 0.05 at the default 20 bins.
//
// Memory per window is SubWindows × (total bins + 3 per numeric feature)
// counters, fixed when the window is made; nothing grows with traffic.
package monitor
