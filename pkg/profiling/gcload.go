package profiling

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
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
// A busy spell that stays below loadAllocRate (a few dozen pods started
// and stopped: 20-50 MB/s) ends the same way, with its release, once the
// process has allocated less than idleAllocRate for idleSamples periods.
const (
	gcSamplePeriod = 5 * time.Second
	loadAllocRate  = 48 << 20
	idleAllocRate  = 16 << 20
	idleSamples    = 6
)

// The loosened collector trades memory for CPU, and the trade grows with
// what is live: at 30,000 pods the server's live heap is gigabytes, and
// LoadGCPercent lets the heap grow by all of it again before a collection.
// So while loaded the heap is also held by a soft memory limit
// (debug.SetMemoryLimit) at SteadyGCPercent's goal plus loadHeadroom: on a
// small cluster the limit is above LoadGCPercent's goal and changes
// nothing; on a large one the collector runs as if at LoadGCPercent until
// the heap is loadHeadroom above what SteadyGCPercent would have let it
// reach, and never tighter than SteadyGCPercent. loadHeadroom is a
// sixteenth of the host's memory, between 64 and 512 MB.
const (
	minLoadHeadroom = 64 << 20
	maxLoadHeadroom = 512 << 20
)

// noMemoryLimit is debug.SetMemoryLimit's "no limit" (Go's default).
const noMemoryLimit = math.MaxInt64

// gcMemory is what the governor reads of the runtime's memory at a sample.
type gcMemory struct {
	live   uint64 // /gc/heap/live:bytes: the heap live at the last collection
	heap   uint64 // heap spans the runtime holds: objects, unused and free, not released
	mapped uint64 // all the runtime holds, released heap excluded (what the memory limit counts)
}

// gcGovernor holds the governor's state between samples.
type gcGovernor struct {
	loaded    bool
	spell     spell  // busy: a sample reached idleAllocRate since the last release
	lastBytes uint64 // /gc/heap/allocs:bytes at the last sample
	headroom  uint64 // loadHeadroom of this host
	limit     int64  // the soft memory limit set while loaded
	setGC     func(percent int)
	setLimit  func(bytes int64)
	release   func()
}

// loadLimit is the soft memory limit while loaded: what the runtime holds
// besides the heap (stacks, metadata), the heap SteadyGCPercent would allow
// over what is live, and the headroom.
func (g *gcGovernor) loadLimit(m gcMemory) int64 {
	other := uint64(0)
	if m.mapped > m.heap {
		other = m.mapped - m.heap
	}
	return int64(other + m.live + m.live*SteadyGCPercent/100 + g.headroom)
}

// What a sample did.
type gcEvent int

const (
	gcNone      gcEvent = iota
	gcLoosened          // the collector went to LoadGCPercent
	gcTightened         // back to SteadyGCPercent after load, and released
	gcSettled           // a busy spell below load ended, and released
)

// sample takes the bytes allocated since the last sample over period and
// the runtime's memory, and returns what it did and the rate it saw.
// While loaded it moves the memory limit with what is live.
func (g *gcGovernor) sample(allocs uint64, m gcMemory, period time.Duration) (ev gcEvent, rate float64) {
	rate = float64(allocs-g.lastBytes) / period.Seconds()
	g.lastBytes = allocs
	if !g.loaded && rate >= loadAllocRate {
		g.loaded = true
		g.spell.sample(true)
		g.limit = g.loadLimit(m)
		g.setLimit(g.limit)
		g.setGC(LoadGCPercent)
		return gcLoosened, rate
	}
	if g.spell.sample(rate >= idleAllocRate) {
		ev = gcSettled
		if g.loaded {
			g.loaded = false
			g.setGC(SteadyGCPercent)
			g.limit = noMemoryLimit
			g.setLimit(g.limit)
			ev = gcTightened
		}
		g.release()
		return ev, rate
	}
	if g.loaded {
		g.limit = g.loadLimit(m)
		g.setLimit(g.limit)
	}
	return gcNone, rate
}

// spell follows a busy spell across samples, for the governor and for
// ProcessSpells: a busy sample starts one (or, inside one, starts its calm
// count again), and it is over after idleSamples calm samples in a row.
type spell struct {
	on   bool
	calm int // calm samples in a row since the spell's last busy one
}

// sample takes whether the latest sample was busy and reports whether a
// spell is over with it.
func (s *spell) sample(busy bool) (over bool) {
	switch {
	case busy:
		s.on, s.calm = true, 0
	case s.on:
		if s.calm++; s.calm >= idleSamples {
			s.on, s.calm = false, 0
			return true
		}
	}
	return false
}

// loadHeadroom is a sixteenth of the host's memory (MemTotal), between
// minLoadHeadroom and maxLoadHeadroom; maxLoadHeadroom when it cannot be
// read.
func loadHeadroom() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return maxLoadHeadroom
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "MemTotal:" {
			continue
		}
		kb, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			break
		}
		return min(max(kb<<10/16, minLoadHeadroom), maxLoadHeadroom)
	}
	return maxLoadHeadroom
}

// gcMetrics are the runtime/metrics the governor reads, in this order.
var gcMetrics = []string{
	"/gc/heap/allocs:bytes",
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
}

// governGC runs for the life of the process once boot is over (unless GOGC
// is set): every gcSamplePeriod it reads how much the process allocated
// and moves the collector between SteadyGCPercent and LoadGCPercent (with
// its memory limit).
func governGC() {
	s := make([]metrics.Sample, len(gcMetrics))
	for i, name := range gcMetrics {
		s[i].Name = name
	}
	read := func() (allocs uint64, m gcMemory) {
		metrics.Read(s)
		v := make([]uint64, len(s))
		for i := range s {
			if s[i].Value.Kind() == metrics.KindUint64 {
				v[i] = s[i].Value.Uint64()
			}
		}
		m = gcMemory{live: v[1], heap: v[2] + v[3] + v[4]}
		if v[5] > v[6] {
			m.mapped = v[5] - v[6]
		}
		return v[0], m
	}
	allocs, _ := read()
	g := &gcGovernor{
		lastBytes: allocs,
		headroom:  loadHeadroom(),
		setGC:     func(p int) { debug.SetGCPercent(p) },
		setLimit:  func(b int64) { debug.SetMemoryLimit(b) },
	}
	var settled string
	g.release = func() { settled = settle() }
	limitLog := func() string {
		return fmt.Sprintf("its heap held at most %d MB above GOGC=%d's (memory limit %d MB, following the live heap)",
			g.headroom>>20, SteadyGCPercent, g.limit>>20)
	}
	if v, set := os.LookupEnv("GOMEMLIMIT"); set {
		// The operator's memory limit stays the only one.
		g.setLimit = func(int64) {}
		limitLog = func() string { return "memory limit GOMEMLIMIT=" + v + " from the environment" }
	}
	t := time.NewTicker(gcSamplePeriod)
	defer t.Stop()
	for range t.C {
		allocs, m := read()
		switch ev, rate := g.sample(allocs, m, gcSamplePeriod); ev {
		case gcLoosened:
			klog.Infof("collector at GOGC=%d while the process allocates %.0f MB/s (under load); %s",
				LoadGCPercent, rate/(1<<20), limitLog())
		case gcTightened:
			klog.Infof("collector back at GOGC=%d: allocating %.1f MB/s for %s (idle); %s",
				SteadyGCPercent, rate/(1<<20), time.Duration(idleSamples)*gcSamplePeriod, settled)
		case gcSettled:
			klog.Infof("busy spell over: allocating %.1f MB/s for %s (idle); %s",
				rate/(1<<20), time.Duration(idleSamples)*gcSamplePeriod, settled)
		}
	}
}
