package profiling

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMappingsOf(t *testing.T) {
	maps := filepath.Join(t.TempDir(), "maps")
	os.WriteFile(maps, []byte(`00400000-04dae000 r-xp 00000000 fe:01 123 /usr/bin/distro server
04dae000-0ed17000 r--p 049ae000 fe:01 123 /usr/bin/distro server
0ed17000-0eeab000 rw-p 0e917000 fe:01 123 /usr/bin/distro server
0eeab000-0eedc000 rw-p 00000000 00:00 0
7f7c5fc00000-7f7edfc00000 r--s 00000000 fe:01 99 /var/lib/db
7ffd1000-7ffd2000 r-xp 00000000 fe:01 124 /usr/bin/distro
`), 0o600)
	got, err := mappingsOf(maps, "/usr/bin/distro server")
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{{0x400000, 0x4dae000, "r-xp"}, {0x4dae000, 0xed17000, "r--p"}, {0xed17000, 0xeeab000, "rw-p"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("got %x, want %x", got, want)
	}
	if ro := readOnly(got); len(ro) != 2 || ro[0] != want[0] || ro[1] != want[1] {
		t.Fatalf("read-only mappings %x, want %x", ro, want[:2])
	}
}

// TestReleaseExecutablePages runs the real madvise on the test binary: its
// file-backed RSS must shrink, and the call must cover its code.
func TestReleaseExecutablePages(t *testing.T) {
	before := fileRSS()
	n, err := ReleaseExecutablePages()
	if err != nil {
		t.Skipf("kernel without MADV_PAGEOUT: %v", err)
	}
	if n == 0 {
		t.Fatal("no read-only mapping of the executable found")
	}
	if after := fileRSS(); after < 0 || after >= before {
		t.Fatalf("file-backed RSS %d -> %d bytes", before, after)
	}
}

// TestReleaseProcessExecutablePages runs the real process_madvise on a
// child (this test binary, waiting on its stdin): its file-backed RSS must
// shrink.
func TestReleaseProcessExecutablePages(t *testing.T) {
	if os.Getenv("PROFILING_TEST_CHILD") == "1" {
		os.Stdout.Write([]byte("up\n"))
		os.Stdin.Read(make([]byte, 1))
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReleaseProcessExecutablePages$")
	cmd.Env = append(os.Environ(), "PROFILING_TEST_CHILD=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	// "up": the child's runtime and test framework ran.
	if _, err := stdout.Read(make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	before, after, err := ReleaseProcessExecutablePages(cmd.Process.Pid)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) {
		t.Skipf("no process_madvise(MADV_PAGEOUT) here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 || after < 0 || after >= before {
		t.Fatalf("file-backed RSS of the child %d -> %d bytes", before, after)
	}
	t.Logf("child's file-backed RSS %d kB -> %d kB", before>>10, after>>10)
}
