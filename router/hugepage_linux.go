package router

import (
	"syscall"
	"unsafe"
)

const hugePage = 2 << 20

// adviseHuge asks Linux to back the part of [p, p+size) that spans whole 2 MB pages with huge pages. With
// 4 KB pages a lookup in a large table misses the TLB on nearly every probe, and under a hypervisor that
// miss costs about as much again as the cache miss. Call it before the memory is first written. It is
// advice: errors are ignored, and with transparent huge pages off it does nothing.
func adviseHuge(p unsafe.Pointer, size uintptr) {
	skip := (hugePage - uintptr(p)%hugePage) % hugePage
	if size < skip+hugePage {
		return
	}
	n := (size - skip) &^ (hugePage - 1)
	_ = syscall.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, skip)), n), syscall.MADV_HUGEPAGE)
}
