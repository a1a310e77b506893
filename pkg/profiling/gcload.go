package profiling

import (
	"runtime/debug"
	"runtime/metrics"
	"time"

	"k8s.io/klog/v2"
)

// LoadGCPercent is the collector's target while the process allocates
// fast: Go's default, which upstream's kube-apiserver runs with. Under
// load (a large cluster's pods being created, scheduled and updated: the
// apiserver allocates hundreds of MB a second) SteadyGCPercent's tighter
// heap costs a collection every second or two: in make bench-scale (1,000
// nodes, 6,000 pods) the collector took 22 % of the server's CPU at
// SteadyGCPercent and 11 % at LoadGCPercent, and the server scheduled
// ~20 % more pods a second with the CPU it saved. An idle server, or a
// node starting a few dozen pods, allocates a few MB a second, and there
// the tighter heap costs next to nothing.
const LoadGCPercent = 100

// The governor's thresholds, in bytes allocated per second over one
// sample period: above loadAllocRate the collector loosens to
// LoadGCPercent; below idleAllocRate for idleSamples periods in a row it
// tightens back to SteadyGCPercent and hands the heap the load left back to
// the kernel. The gap between the two keeps a busy spell from flapping.
const (
	gcSamplePeriod = 5 * time.Second
	loadAllocRate  = 48 << 20
	idleAllocRate  = 16 << 20
	idleSamples    = 6
)

// gcGovernor holds the governor's state between samples.
type gcGovernor struct {
	loaded    bool
	calm      int    // samples in a row below idleAllocRate while loaded
	lastBytes uint64 // /gc/heap/allocs:bytes at the last sample
	setGC     func(percent int)
	release   func()
}

// sample takes the bytes allocated since the last sample over period and
// returns whether the collector's target changed, and the rate it saw.
func (g *gcGovernor) sample(allocs uint64, period time.Duration) (changed bool, rate float64) {
	rate = float64(allocs-g.lastBytes) / period.Seconds()
	g.lastBytes = allocs
	switch {
	case !g.loaded && rate >= loadAllocRate:
		g.loaded, g.calm = true, 0
		g.setGC(LoadGCPercent)
		return true, rate
	case g.loaded && rate < idleAllocRate:
		g.calm++
		if g.calm >= idleSamples {
			g.loaded, g.calm = false, 0
			g.setGC(SteadyGCPercent)
			g.release()
			return true, rate
		}
	case g.loaded:
		g.calm = 0
	}
	return false, rate
}

// governGC runs for the life of the process once boot is over (unless GOGC
// is set): every gcSamplePeriod it reads how much the process allocated
// and moves the collector between SteadyGCPercent and LoadGCPercent.
func governGC() {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	read := func() uint64 {
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[0].Value.Uint64()
	}
	g := &gcGovernor{
		lastBytes: read(),
		setGC:     func(p int) { debug.SetGCPercent(p) },
		release:   debug.FreeOSMemory,
	}
	t := time.NewTicker(gcSamplePeriod)
	defer t.Stop()
	for range t.C {
		changed, rate := g.sample(read(), gcSamplePeriod)
		if !changed {
			continue
		}
		if g.loaded {
			klog.Infof("collector at GOGC=%d while the process allocates %.0f MB/s (under load)", LoadGCPercent, rate/(1<<20))
		} else {
			klog.Infof("collector back at GOGC=%d: allocating %.1f MB/s for %s (idle); the heap the load left is handed back to the kernel",
				SteadyGCPercent, rate/(1<<20), time.Duration(idleSamples)*gcSamplePeriod)
		}
	}
}
