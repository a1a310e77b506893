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
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	ranges, err := readOnlyMappings("/proc/self/maps", exe)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, r := range ranges {
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_PAGEOUT); e != 0 {
			return total, fmt.Errorf("madvise(MADV_PAGEOUT) of %s: %v", exe, e)
		}
		total += int64(r[1] - r[0])
	}
	return total, nil
}

// readOnlyMappings lists the [start, end) address ranges of the mappings of
// file path in a /proc/PID/maps file that are not writable (a writable
// mapping's pages are the process's own copies, not the file's).
func readOnlyMappings(maps, path string) ([][2]uintptr, error) {
	f, err := os.Open(maps)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][2]uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || strings.Join(fields[5:], " ") != path || strings.Contains(fields[1], "w") {
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
		out = append(out, [2]uintptr{uintptr(s), uintptr(e)})
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
