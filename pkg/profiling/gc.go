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
	// Two collections: what boot left in sync.Pools (the import's copy
	// buffers, gRPC's message buffers) survives the first one in the pools'
	// victim caches and is freed by the second, which FreeOSMemory runs
	// before returning the free heap to the kernel.
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	klog.Infof("boot done: Go heap %d MB in use, %d MB returned to the kernel; collector at %s from now on",
		m.HeapInuse>>20, m.HeapReleased>>20, gogc)
	before := fileRSS()
	if _, err := ReleaseExecutablePages(); err != nil {
		klog.Infof("boot done: the executable's pages boot touched stay resident (%v)", err)
		return
	}
	klog.Infof("boot done: the executable's pages boot touched handed back to the kernel: file-backed RSS %d MB -> %d MB (what is used again comes back from the page cache)",
		before>>20, fileRSS()>>20)
}
