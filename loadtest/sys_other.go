//go:build !unix

package loadtest

import "time"

// RaiseFileLimit does nothing where there is no RLIMIT_NOFILE; it reports no limit.
func RaiseFileLimit() (uint64, error) { return 0, nil }

// processCPU is not measured here; the report's own CPU figure is then 0.
func processCPU() time.Duration { return 0 }
