//go:build unix

package router

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user and system) this process has used. Benchmarks report it per operation as
// well as the wall time, because on a shared machine the wall time also counts the time other processes
// held the CPU.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
