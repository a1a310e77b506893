package kubelet

import (
	"os"
	"path/filepath"
	"testing"
)

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A v1 cpuset cgroup starts empty (the kernel creates the files): each new
// level gets its parent's CPUs and memory nodes.
func TestEnsureV1CopiesCpuset(t *testing.T) {
	m := t.TempDir()
	write(t, filepath.Join(m, "cpuset.cpus"), "0-1\n")
	write(t, filepath.Join(m, "cpuset.mems"), "0\n")
	for _, d := range []string{"distro", "distro/n1"} {
		write(t, filepath.Join(m, d, "cpuset.cpus"), "\n")
		write(t, filepath.Join(m, d, "cpuset.mems"), "\n")
	}
	if err := ensureV1(m, "/distro/n1", true); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(m, "distro/n1/cpuset.cpus")); got != "0-1\n" {
		t.Errorf("cpuset.cpus = %q", got)
	}
	if got := read(t, filepath.Join(m, "distro/n1/cpuset.mems")); got != "0\n" {
		t.Errorf("cpuset.mems = %q", got)
	}
	// Other hierarchies: the folders only.
	m2 := t.TempDir()
	if err := ensureV1(m2, "/distro/n1", false); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(m2, "distro/n1")); err != nil || !st.IsDir() {
		t.Errorf("distro/n1 not created: %v", err)
	}
}

// On cgroup v2 every level above the pods delegates the controllers its
// parent offers.
func TestEnsureUnifiedDelegates(t *testing.T) {
	m := t.TempDir()
	write(t, filepath.Join(m, "cgroup.controllers"), "cpuset cpu io memory pids\n")
	write(t, filepath.Join(m, "cgroup.subtree_control"), "cpu memory\n")
	write(t, filepath.Join(m, "distro/cgroup.controllers"), "cpuset cpu io memory pids\n")
	write(t, filepath.Join(m, "distro/cgroup.subtree_control"), "")
	write(t, filepath.Join(m, "distro/n1/cgroup.controllers"), "cpuset cpu io memory pids\n")
	write(t, filepath.Join(m, "distro/n1/cgroup.subtree_control"), "")
	if err := ensureUnified(m, "/distro/n1"); err != nil {
		t.Fatal(err)
	}
	// A real cgroup.subtree_control takes "+a +b" and lists the result;
	// the fake file keeps what was written.
	if got := read(t, filepath.Join(m, "cgroup.subtree_control")); got != "+cpuset +io +pids" {
		t.Errorf("root subtree_control = %q", got)
	}
	for _, d := range []string{"distro", "distro/n1"} {
		if got := read(t, filepath.Join(m, d, "cgroup.subtree_control")); got != "+cpuset +cpu +io +memory +pids" {
			t.Errorf("%s subtree_control = %q", d, got)
		}
	}
}
