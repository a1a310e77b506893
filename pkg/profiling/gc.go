package profiling

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// SteadyGCPercent is the Go collector's target once boot is over (and
// containerd's and the shims', which start with it): between collections
// the heap may grow to 1.5 times what is live instead of Go's default 2
// times. GOGC in the environment overrides it.
const SteadyGCPercent = 50

// GOGCEnv is the environment entry of SteadyGCPercent for the programs
// distro starts (containerd, which passes its environment to the shims);
// empty when GOGC is set, so theirs comes from the environment as well.
func GOGCEnv() []string {
	if _, set := os.LookupEnv("GOGC"); set {
		return nil
	}
	return []string{"GOGC=" + strconv.Itoa(SteadyGCPercent)}
}

// bootWork counts the work of a boot that goes on after its component said
// it is ready (BootWork); AfterBoot waits for it.
var bootWork sync.WaitGroup

// BootWork registers work that is part of boot although its component is
// ready before it ends: the node's image import, which reads every carried
// image (hundreds of MB through 1 MB copy buffers and gRPC messages) while
// the kubelet already registers the node. AfterBoot's release waits until
// every done has been called, so the heap and the executable pages that
// work used are handed back too. Call it before the components start.
func BootWork() (done func()) {
	bootWork.Add(1)
	var once sync.Once
	return func() { once.Do(bootWork.Done) }
}

// AfterBoot is called once every component of a server or agent is ready;
// it releases what boot held once the work registered with BootWork is done
// as well (at once when there is none).
// Boot allocates most (the apiserver's OpenAPI specs, every informer's first
// list, the image import) and is faster with Go's default collector; a
// running server or agent allocates little, and the heap held between
// collections is what an operator sees as its size. So the collector
// tightens to SteadyGCPercent then, unless GOGC is set, and the heap boot
// left behind goes back to the kernel at once instead of over minutes; so
// do the executable's pages that boot touched (ReleaseExecutablePages).
// From then on governGC loosens the collector to LoadGCPercent while the
// process allocates fast, and tightens it again once it is idle.
func AfterBoot() {
	go func() {
		<-BootWorkDone()
		afterBoot()
	}()
}

// BootWorkDone is closed once every work registered with BootWork is done.
func BootWorkDone() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		bootWork.Wait()
		close(ch)
	}()
	return ch
}

func afterBoot() {
	gogc := "GOGC from the environment"
	if env := GOGCEnv(); env != nil {
		debug.SetGCPercent(SteadyGCPercent)
		gogc = env[0] + fmt.Sprintf(" (GOGC=%d while under load)", LoadGCPercent)
		go governGC()
	}
	m := releaseHeap()
	klog.Infof("boot done: Go heap %d MB in use, %d MB returned to the kernel; collector at %s from now on",
		m.HeapInuse>>20, m.HeapReleased>>20, gogc)
	before, after, err := releaseExecutable()
	if err != nil {
		klog.Infof("boot done: the executable's pages boot touched stay resident (%v)", err)
		return
	}
	klog.Infof("boot done: the executable's pages boot touched handed back to the kernel: file-backed RSS %d MB -> %d MB (what is used again comes back from the page cache)",
		before>>20, after>>20)
}

// releaseHeap returns the free heap to the kernel and reports the heap
// after. Two collections: what the work left in sync.Pools (the image
// import's copy buffers, gRPC's message buffers) survives the first one in
// the pools' victim caches and is freed by the second, which FreeOSMemory
// runs before returning the free heap to the kernel.
func releaseHeap() runtime.MemStats {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// releaseExecutable is ReleaseExecutablePages with the process's
// file-backed RSS before and after.
func releaseExecutable() (before, after int64, err error) {
	before = fileRSS()
	if _, err := ReleaseExecutablePages(); err != nil {
		return before, before, err
	}
	return before, fileRSS(), nil
}

// ProcessSpells calls release each time a busy spell of another process
// is over, as the governor does for this one: busy is asked every
// gcSamplePeriod until stop is closed; a spell starts at a busy sample and
// is over after idleSamples calm ones in a row. containerd's spells are
// its own: after a burst of pods the kubelet has it remove their sandboxes
// at its next garbage collection (networks, mounts, snapshots), up to a
// minute after the burst's last allocation in this process.
func ProcessSpells(stop <-chan struct{}, busy func() bool, release func()) {
	t := time.NewTicker(gcSamplePeriod)
	defer t.Stop()
	processSpells(stop, t.C, busy, release)
}

// processSpells is ProcessSpells sampling at each tick.
func processSpells(stop <-chan struct{}, tick <-chan time.Time, busy func() bool, release func()) {
	var s spell
	for {
		select {
		case <-stop:
			return
		case <-tick:
		}
		if s.sample(busy()) {
			release()
		}
	}
}

// CPUAbove is a probe for ProcessSpells: true when process pid used more
// than share of one core between the probe's previous call and this one
// (false once it has exited).
func CPUAbove(pid int, share float64) func() bool {
	last, at := cpuSeconds(pid), time.Now()
	return func() bool {
		now, t := cpuSeconds(pid), time.Now()
		busy := now-last > share*t.Sub(at).Seconds()
		last, at = now, t
		return busy
	}
}

// settle hands back what a busy spell left, as boot's end does: the free
// heap (releaseHeap) and the pages of the executable the spell
// touched (~35 MB after 130 pods started and stopped on a server with its
// node). It says what it did, for the log. containerd's pages go back
// after its own spells (ProcessSpells).
// Go does not move live objects, so heap spans the spell filled and that
// still hold one live object stay.
func settle() string {
	m := releaseHeap()
	done := fmt.Sprintf("the free heap went back to the kernel (Go heap %d MB in use)", m.HeapInuse>>20)
	if before, after, err := releaseExecutable(); err != nil {
		done += fmt.Sprintf("; the executable's pages stay resident (%v)", err)
	} else {
		done += fmt.Sprintf(", and the executable's pages the work touched: file-backed RSS %d MB -> %d MB", before>>20, after>>20)
	}
	return done
}
