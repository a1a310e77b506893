package profiling

import (
	"os"
	"path/filepath"
	"testing"
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
