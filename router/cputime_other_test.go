//go:build !unix

package router

import "time"

// cpuTime is not measured on this platform; the benchmarks then report only the wall time.
func cpuTime() time.Duration { return 0 }
