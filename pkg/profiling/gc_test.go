package profiling

import (
	"os"
	"testing"
	"time"
)

// BootWorkDone stays open while registered boot work runs (AfterBoot's
// release must not run under the node's image import) and closes once each
// done was called, a second call of one done changing nothing.
func TestBootWorkDone(t *testing.T) {
	first, second := BootWork(), BootWork()
	done := BootWorkDone()
	first()
	first()
	select {
	case <-done:
		t.Fatal("BootWorkDone closed with one boot work still running")
	case <-time.After(100 * time.Millisecond):
	}
	second()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("BootWorkDone still open after every boot work was done")
	}
	select {
	case <-BootWorkDone():
	case <-time.After(5 * time.Second):
		t.Fatal("BootWorkDone of a later call still open with no boot work")
	}
}

// The governor loosens the collector at once when the process allocates
// fast, keeps it loose through a short lull, and tightens it (handing the
// heap back) only after idleSamples quiet samples in a row. While loose,
// a soft memory limit holds the heap at most the headroom above the tight
// collector's goal, following the live heap; tight again, there is none.
func TestGCGovernor(t *testing.T) {
	var percents []int
	var limits []int64
	released := 0
	g := &gcGovernor{
		headroom: 512 << 20,
		setGC:    func(p int) { percents = append(percents, p) },
		setLimit: func(b int64) { limits = append(limits, b) },
		release:  func() { released++ },
	}
	const period = gcSamplePeriod
	var total uint64
	// 1 GB live, 1.8 GB of heap spans, 0.2 GB more the runtime holds.
	mem := gcMemory{live: 1 << 30, heap: 1843 << 20, mapped: 2048 << 20}
	step := func(rate uint64) bool {
		total += rate * uint64(period/time.Second)
		ev, _ := g.sample(total, mem, period)
		return ev != gcNone
	}
	if step(2<<20) || g.loaded {
		t.Fatal("an idle process (2 MB/s) changed the collector")
	}
	if !step(200<<20) || !g.loaded || len(percents) != 1 || percents[0] != LoadGCPercent {
		t.Fatalf("200 MB/s: loaded %v, targets %v; want GOGC=%d", g.loaded, percents, LoadGCPercent)
	}
	// The limit: 205 MB besides the heap + 1.5 GB (GOGC=50's goal) + 512 MB.
	if want := int64(205+1536+512) << 20; len(limits) != 1 || limits[0] != want {
		t.Fatalf("limits %v after loosening; want [%d]", limits, want)
	}
	// It follows the live heap while loaded.
	mem.live = 2 << 30
	step(200 << 20)
	if want := int64(205+3072+512) << 20; limits[len(limits)-1] != want {
		t.Fatalf("limit %d with 2 GB live; want %d", limits[len(limits)-1], want)
	}
	// A lull shorter than idleSamples, then load again: still loaded.
	for i := 0; i < idleSamples-1; i++ {
		if step(1 << 20) {
			t.Fatalf("quiet sample %d changed the collector", i+1)
		}
	}
	if step(100<<20) || !g.loaded {
		t.Fatal("load after a short lull changed the collector")
	}
	// Between the thresholds: neither loosens nor counts as quiet.
	for i := 0; i < 2*idleSamples; i++ {
		if step(32 << 20) {
			t.Fatal("32 MB/s changed the collector")
		}
	}
	for i := 0; i < idleSamples-1; i++ {
		step(1 << 20)
	}
	if !step(1<<20) || g.loaded || percents[len(percents)-1] != SteadyGCPercent || released != 1 {
		t.Fatalf("after %d quiet samples: loaded %v, targets %v, released %d; want GOGC=%d and one release",
			idleSamples, g.loaded, percents, released, SteadyGCPercent)
	}
	if limits[len(limits)-1] != noMemoryLimit {
		t.Fatalf("memory limit %d once tight again; want none", limits[len(limits)-1])
	}
	n := len(limits)
	step(1 << 20)
	if len(limits) != n {
		t.Fatal("the memory limit was set while tight")
	}
}

// A busy spell below the load threshold (a few dozen pods started and
// stopped) leaves the collector alone and, once the process has been quiet
// for idleSamples samples, is released once; quiet samples after it
// release nothing more.
func TestGCGovernorSettlesABusySpell(t *testing.T) {
	released, gcChanges := 0, 0
	g := &gcGovernor{
		headroom: 512 << 20,
		setGC:    func(int) { gcChanges++ },
		setLimit: func(int64) {},
		release:  func() { released++ },
	}
	var total uint64
	step := func(rate uint64) gcEvent {
		total += rate * uint64(gcSamplePeriod/time.Second)
		ev, _ := g.sample(total, gcMemory{live: 150 << 20, heap: 220 << 20, mapped: 300 << 20}, gcSamplePeriod)
		return ev
	}
	for i := 0; i < 2*idleSamples; i++ {
		if ev := step(1 << 20); ev != gcNone {
			t.Fatalf("an idle process (1 MB/s) did %v", ev)
		}
	}
	step(30 << 20)
	step(30 << 20)
	for i := 0; i < idleSamples-1; i++ {
		if ev := step(1 << 20); ev != gcNone {
			t.Fatalf("quiet sample %d after a busy spell did %v", i+1, ev)
		}
	}
	if ev := step(1 << 20); ev != gcSettled || released != 1 || gcChanges != 0 {
		t.Fatalf("after %d quiet samples: event %v, released %d, collector changed %d times; want settled, one release, no change",
			idleSamples, ev, released, gcChanges)
	}
	for i := 0; i < 2*idleSamples; i++ {
		step(1 << 20)
	}
	if released != 1 {
		t.Fatalf("released %d times; want once per busy spell", released)
	}
}

// The headroom of this host is a sixteenth of its memory, within bounds.
func TestLoadHeadroom(t *testing.T) {
	h := loadHeadroom()
	if h < minLoadHeadroom || h > maxLoadHeadroom {
		t.Fatalf("loadHeadroom %d MB; want between %d and %d MB", h>>20, minLoadHeadroom>>20, maxLoadHeadroom>>20)
	}
	t.Logf("load headroom on this host: %d MB", h>>20)
}

// A spell of another process is over after idleSamples calm samples in a
// row: one release per spell, none while busy or idle, and a busy sample
// inside the calm run starts the count again.
func TestProcessSpells(t *testing.T) {
	// The samples, in order: idle, a spell with one busy sample in its
	// calm run, then idle for long, then a second spell.
	var samples []bool
	samples = append(samples, false, false, true, true)
	for i := 0; i < idleSamples-1; i++ {
		samples = append(samples, false)
	}
	samples = append(samples, true) // still the same spell
	for i := 0; i < 3*idleSamples; i++ {
		samples = append(samples, false)
	}
	samples = append(samples, true)
	for i := 0; i < idleSamples; i++ {
		samples = append(samples, false)
	}
	stop, tick := make(chan struct{}), make(chan time.Time)
	n, releasedAt := 0, []int{}
	done := make(chan struct{})
	go func() {
		processSpells(stop, tick, func() bool { n++; return samples[n-1] }, func() { releasedAt = append(releasedAt, n) })
		close(done)
	}()
	for range samples {
		tick <- time.Now()
	}
	close(stop)
	<-done
	// The first spell's last busy sample is number 4+idleSamples and the
	// spell is over idleSamples samples later; the second ends on the last.
	first := 4 + idleSamples + idleSamples
	if len(releasedAt) != 2 || releasedAt[0] != first || releasedAt[1] != len(samples) {
		t.Fatalf("released after samples %v of %d, want [%d %d]", releasedAt, len(samples), first, len(samples))
	}
}

// CPUAbove tells a process that works from one that waits: this process
// spinning for 200 ms is above a tenth of a core, then sleeping 200 ms is
// not; a process that is gone is never busy.
func TestCPUAbove(t *testing.T) {
	busy := CPUAbove(os.Getpid(), 0.1)
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
	}
	if !busy() {
		t.Fatal("spinning 200 ms: not busy")
	}
	time.Sleep(200 * time.Millisecond)
	if busy() {
		t.Fatal("sleeping 200 ms: busy")
	}
	gone := CPUAbove(1<<22+12345, 0.1)
	if gone() {
		t.Fatal("a process that does not exist: busy")
	}
}
