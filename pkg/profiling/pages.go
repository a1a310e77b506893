package profiling

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

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
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	return mappingsOf("/proc/self/maps", exe)
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
func fileRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
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
