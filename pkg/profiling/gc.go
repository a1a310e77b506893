package profiling

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"

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

// The releases OnSettle registered, by key.
var (
	settleMu    sync.Mutex
	settleNext  int
	settleHooks = map[int]func(){}
)

// OnSettle registers f to run each time a busy spell of the process is
// over (a burst of pods started or stopped, then 30 s of quiet: see
// governGC), after the process has handed back what the spell left of its
// own: the node releases containerd's executable pages with it. The
// returned func unregisters f.
func OnSettle(f func()) (cancel func()) {
	settleMu.Lock()
	defer settleMu.Unlock()
	key := settleNext
	settleNext++
	settleHooks[key] = f
	return func() {
		settleMu.Lock()
		defer settleMu.Unlock()
		delete(settleHooks, key)
	}
}

// settle hands back what a busy spell left, as boot's end does: the free
// heap (releaseHeap) and the pages of the executable the spell
// touched (~35 MB after 130 pods started and stopped on a server with its
// node), then runs the OnSettle releases. It says what it did, for the log.
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
	settleMu.Lock()
	hooks := make([]func(), 0, len(settleHooks))
	for _, f := range settleHooks {
		hooks = append(hooks, f)
	}
	settleMu.Unlock()
	for _, f := range hooks {
		f()
	}
	return done
}
