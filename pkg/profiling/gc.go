package profiling

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"

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

// AfterBoot is called once every component of a server or agent is ready.
// Boot allocates most (the apiserver's OpenAPI specs, every informer's first
// list) and is faster with Go's default collector; a running server or
// agent allocates little, and the heap held between collections is what an
// operator sees as its size. So the collector tightens to SteadyGCPercent
// now, unless GOGC is set, and the heap boot left behind goes back to the
// kernel at once instead of over minutes; so do the executable's pages that
// boot touched (ReleaseExecutablePages).
func AfterBoot() {
	gogc := "GOGC from the environment"
	if env := GOGCEnv(); env != nil {
		debug.SetGCPercent(SteadyGCPercent)
		gogc = env[0]
	}
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
