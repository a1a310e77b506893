package kubelet

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"distro/pkg/node/containerd"
)

// cgroupFS is where the cgroup hierarchies are mounted (a variable for tests).
var cgroupFS = "/sys/fs/cgroup"

// CgroupRoot is the cgroup a node's pods live under with the cgroupfs
// driver: /distro/<node>. Nodes that share one cgroup tree (several nodes
// in containers started with --cgroupns host, or one on the host beside
// them) then never see each other's pod cgroups: a kubelet removes the pod
// cgroups it does not know as orphans and kills their processes, and its
// node-wide accounting reads the whole kubepods tree. With the systemd
// driver (cgroup v2 hosts booted with systemd: one node per host) the
// kubelet's default, kubepods.slice, is kept and this returns "".
func CgroupRoot(nodeName string) string {
	if containerd.SystemdCgroups() {
		return ""
	}
	return "/distro/" + nodeName
}

// ensureCgroupRoot creates root in every cgroup v1 hierarchy the kubelet
// checks, or in the unified hierarchy with the controllers delegated down to
// it; the kubelet refuses to start when its cgroup root does not exist.
func ensureCgroupRoot(root string) error {
	if root == "" {
		return nil
	}
	if containerd.CgroupV2() {
		return ensureUnified(cgroupFS, root)
	}
	entries, err := os.ReadDir(cgroupFS)
	if err != nil {
		return fmt.Errorf("cgroup root %s: %w", root, err)
	}
	for _, e := range entries {
		// Symlinks (cpu -> cpu,cpuacct) name hierarchies listed on their
		// own; "unified" is the empty v2 hierarchy of a hybrid host.
		if !e.IsDir() || e.Name() == "unified" {
			continue
		}
		if err := ensureV1(filepath.Join(cgroupFS, e.Name()), root, strings.Contains(e.Name(), "cpuset")); err != nil {
			return fmt.Errorf("cgroup root %s: %w", root, err)
		}
	}
	return nil
}

// ensureV1 creates each level of root under a v1 hierarchy; cpuset cgroups
// start without CPUs or memory nodes, so they inherit their parent's.
func ensureV1(mount, root string, cpuset bool) error {
	dir := mount
	for _, part := range strings.Split(strings.Trim(root, "/"), "/") {
		parent := dir
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		if !cpuset {
			continue
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			cur, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return err
			}
			if strings.TrimSpace(string(cur)) != "" {
				continue
			}
			val, err := os.ReadFile(filepath.Join(parent, f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, f), val, 0o644); err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(dir, f), err)
			}
		}
	}
	return nil
}

// ensureUnified creates each level of root and enables, at every level
// above the pods, the controllers the level above it offers.
func ensureUnified(mount, root string) error {
	dir := mount
	for _, part := range strings.Split(strings.Trim(root, "/"), "/") {
		if err := delegate(dir); err != nil {
			return err
		}
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
	}
	return delegate(dir)
}

func delegate(dir string) error {
	avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return err
	}
	enabled, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	have := map[string]bool{}
	for _, c := range strings.Fields(string(enabled)) {
		have[c] = true
	}
	var add []string
	for _, c := range strings.Fields(string(avail)) {
		if !have[c] {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(add, " ")), 0o644); err != nil {
		return fmt.Errorf("enable %s in %s: %w", strings.Join(add, " "), dir, err)
	}
	return nil
}
