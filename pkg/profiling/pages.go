package profiling

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ReleaseExecutablePages asks the kernel to reclaim the pages of distro's
// own executable that are in memory (MADV_PAGEOUT, Linux 5.4 and later):
// the read-only mappings of the binary, its code and constant data. Boot
// runs the init code of every linked component and their first starts,
// about 150 MB of a ~250 MB binary that a running server never touches
// again but keeps counted in its RSS; what is still used comes back from
// the page cache at its next use (a running server's working set of the
// binary is ~90 MB). It returns the bytes of the mappings advised; a
// kernel without MADV_PAGEOUT is an error, and nothing is lost by it.
func ReleaseExecutablePages() (int64, error) {
	maps, err := ExecutableMappings()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, m := range readOnly(maps) {
		if err := m.Advise(unix.MADV_PAGEOUT); err != nil {
			return total, fmt.Errorf("madvise(MADV_PAGEOUT) of the executable: %v", err)
		}
		total += int64(m.End - m.Start)
	}
	return total, nil
}

// ReleaseProcessExecutablePages is ReleaseExecutablePages for another
// process that distro started (containerd): process_madvise(MADV_PAGEOUT)
// of the read-only mappings of pid's executable (Linux 5.10 and later; the
// caller needs CAP_SYS_NICE). It returns the process's file-backed RSS
// before and after, in bytes.
func ReleaseProcessExecutablePages(pid int) (before, after int64, err error) {
	dir := "/proc/" + strconv.Itoa(pid)
	exe, maps, err := executableMappingsOf(dir)
	if err != nil {
		return 0, 0, err
	}
	// struct iovec, with addresses of pid's address space.
	type iovec struct{ base, len uintptr }
	var iov []iovec
	for _, m := range readOnly(maps) {
		iov = append(iov, iovec{m.Start, m.End - m.Start})
	}
	if len(iov) == 0 {
		return 0, 0, fmt.Errorf("no read-only mapping of %s in process %d", exe, pid)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("pidfd_open of process %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	before = fileRSSOf(dir + "/status")
	_, _, e := unix.Syscall6(unix.SYS_PROCESS_MADVISE, uintptr(pidfd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)), unix.MADV_PAGEOUT, 0, 0)
	runtime.KeepAlive(iov)
	if e != 0 {
		return before, before, fmt.Errorf("process_madvise(MADV_PAGEOUT) of %s: %w", exe, e)
	}
	return before, fileRSSOf(dir + "/status"), nil
}

// readOnly keeps the mappings that are not writable (a writable mapping's
// pages are the process's own copies, not the file's).
func readOnly(maps []Mapping) []Mapping {
	var out []Mapping
	for _, m := range maps {
		if !strings.Contains(m.Perms, "w") {
			out = append(out, m)
		}
	}
	return out
}

// Mapping is one mapping of a file in a process's address space.
type Mapping struct {
	Start, End uintptr // [Start, End)
	Perms      string  // as in /proc/PID/maps: r-xp, r--p, rw-p…
}

// Advise is madvise(2) of the mapping's whole range.
func (m Mapping) Advise(advice int) error {
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, m.Start, m.End-m.Start, uintptr(advice)); e != 0 {
		return e
	}
	return nil
}

// ExecutableMappings lists the mappings of distro's own executable in this
// process (its code, constant data and data).
func ExecutableMappings() ([]Mapping, error) {
	_, maps, err := executableMappingsOf("/proc/self")
	return maps, err
}

// executableMappingsOf returns the executable of the process whose /proc
// folder is dir, and its mappings.
func executableMappingsOf(dir string) (string, []Mapping, error) {
	exe, err := os.Readlink(dir + "/exe")
	if err != nil {
		return "", nil, err
	}
	maps, err := mappingsOf(dir+"/maps", exe)
	return exe, maps, err
}

// mappingsOf lists the mappings of file path in a /proc/PID/maps file.
func mappingsOf(maps, path string) ([]Mapping, error) {
	f, err := os.Open(maps)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || strings.Join(fields[5:], " ") != path {
			continue
		}
		start, end, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		s, err1 := strconv.ParseUint(start, 16, 64)
		e, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil || e <= s {
			return nil, fmt.Errorf("%s: bad line %q", maps, sc.Text())
		}
		out = append(out, Mapping{Start: uintptr(s), End: uintptr(e), Perms: fields[1]})
	}
	return out, sc.Err()
}

// fileRSS is the process's resident file-backed memory in bytes (RssFile
// of /proc/self/status), or -1.
func fileRSS() int64 { return fileRSSOf("/proc/self/status") }

// fileRSSOf reads RssFile of a /proc/PID/status file, in bytes (-1 if it
// cannot).
func fileRSSOf(status string) int64 {
	data, err := os.ReadFile(status)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}
