package checkconfig

import (
	"os"
	"path/filepath"
	"slices"
	"unicode"
)

// MirrorHost fills root with a view of this host for Checker.Root: its
// top-level folders as symlinks, and /proc as a folder of symlinks to the
// host's /proc entries (processes left out) except those named in hide, so
// that a test can replace or drop one file and see a check fail.
func MirrorHost(root string, hide ...string) error {
	for _, d := range []string{"sys", "lib", "boot", "usr", "bin", "sbin"} {
		if err := os.Symlink("/"+d, filepath.Join(root, d)); err != nil {
			return err
		}
	}
	proc := filepath.Join(root, "proc")
	if err := os.Mkdir(proc, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if unicode.IsDigit(rune(name[0])) || slices.Contains(hide, name) {
			continue
		}
		if err := os.Symlink("/proc/"+name, filepath.Join(proc, name)); err != nil {
			return err
		}
	}
	return nil
}
