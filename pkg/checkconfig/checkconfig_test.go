package checkconfig

import (
	"bytes"
	"compress/gzip"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nodeOptions are a node's checks without ports.
var nodeOptions = Options{Node: true, ProxyMode: "iptables"}

func find(t *testing.T, rs []Result, name string) Result {
	t.Helper()
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no check named %q in:\n%s", name, lines(rs))
	return Result{}
}

func lines(rs []Result) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(r.Line() + "\n")
	}
	return b.String()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the host checks run as root (writable sysctls)")
	}
}

// TestHost: every required check passes on the machines distro is built
// and tested on.
func TestHost(t *testing.T) {
	requireRoot(t)
	rs := (&Checker{Root: "/"}).Run(nodeOptions)
	if _, _, missing := Summary(rs); missing > 0 {
		t.Errorf("%d missing on this host:\n%s", missing, lines(rs))
	}
	for _, name := range []string{"overlayfs", "br_netfilter", "vxlan", "iptables match statistic", "cgroup memory", "namespace net", "seccomp", "tool iptables"} {
		if r := find(t, rs, name); r.Status != OK {
			t.Errorf("%s: %s", name, r.Line())
		}
	}
	t.Logf("\n%s", lines(rs))
}

// fakeHost returns a root that shows this host, so a test can replace
// one file.
func fakeHost(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := MirrorHost(root); err != nil {
		t.Fatal(err)
	}
	return root
}

// put replaces (data != nil) or removes a file of the fake tree.
func put(t *testing.T, root, path string, data []byte) {
	t.Helper()
	p := filepath.Join(root, path)
	os.Remove(p)
	if data == nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func without(t *testing.T, file, word string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, word) {
			out = append(out, line)
		}
	}
	return []byte(strings.Join(out, "\n"))
}

// TestOverlayMissing: a kernel whose /proc/filesystems has no overlay and
// that has no config or modules to tell otherwise lacks overlayfs.
func TestOverlayMissing(t *testing.T) {
	requireRoot(t)
	root := fakeHost(t)
	put(t, root, "proc/filesystems", without(t, "/proc/filesystems", "overlay"))
	put(t, root, "proc/config.gz", nil)
	rs := (&Checker{Root: root}).Run(nodeOptions)
	r := find(t, rs, "overlayfs")
	if r.Status != Missing || !strings.Contains(r.Detail, "overlay") {
		t.Errorf("overlayfs: %s", r.Line())
	}
	// Only what the altered tree hides is missing: everything the kernel
	// shows at run time still counts.
	for _, r := range rs {
		if r.Status == Missing && r.Name != "overlayfs" {
			t.Errorf("also missing: %s", r.Line())
		}
	}

	// The start of a server or agent refuses with that line.
	t.Setenv(RootEnv, root)
	err := Preflight(nodeOptions)
	if err == nil || !strings.HasPrefix(err.Error(), "overlayfs: ") {
		t.Errorf("Preflight: %v", err)
	}
}

func gz(t *testing.T, text string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(text))
	w.Close()
	return b.Bytes()
}

// TestKernelConfig: built in, a module, a module the kernel does not load
// by itself, and not built at all, from the config and /lib/modules alone.
func TestKernelConfig(t *testing.T) {
	root := t.TempDir()
	put(t, root, "proc/sys/kernel/osrelease", []byte("6.1.0-test\n"))
	put(t, root, "proc/config.gz", gz(t, "CONFIG_OVERLAY_FS=m\nCONFIG_VXLAN=y\nCONFIG_BRIDGE_NETFILTER=m\n# CONFIG_VETH is not set\nCONFIG_NF_TABLES=m\n"))
	put(t, root, "lib/modules/6.1.0-test/modules.dep", []byte("kernel/fs/overlayfs/overlay.ko.zst:\nkernel/net/bridge/br_netfilter.ko.zst: kernel/net/bridge/bridge.ko.zst\n"))
	c := &Checker{Root: root}
	want := map[string]struct {
		status Status
		detail string
	}{
		"overlayfs":    {OK, "module overlay (CONFIG_OVERLAY_FS=m)"},
		"vxlan":        {OK, "CONFIG_VXLAN=y in /proc/config.gz"},
		"br_netfilter": {Missing, "modprobe br_netfilter"},
		"veth":         {Missing, "built without CONFIG_VETH"},
		"nf_tables":    {Missing, "no module nf_tables in /lib/modules/6.1.0-test"},
	}
	for _, f := range nodeFeatures("iptables") {
		w, ok := want[f.name]
		if !ok {
			continue
		}
		r := c.checkFeature(f)
		if r.Status != w.status || !strings.Contains(r.Detail, w.detail) {
			t.Errorf("%s: got %s, want %s with %q", f.name, r.Line(), w.status, w.detail)
		}
	}

	// No config, no modules: a feature that always shows when present is
	// missing; one that may not show cannot be told.
	put(t, root, "proc/config.gz", nil)
	os.RemoveAll(filepath.Join(root, "lib"))
	c = &Checker{Root: root}
	for _, f := range nodeFeatures("iptables") {
		r := c.checkFeature(f)
		if f.name == "overlayfs" && r.Status != Missing {
			t.Errorf("overlayfs without any trace: %s", r.Line())
		}
		if f.name == "veth" && (r.Status != Warn || !strings.Contains(r.Detail, "cannot tell")) {
			t.Errorf("veth without any trace: %s", r.Line())
		}
	}
}

// TestCgroups: v2 with a controller not delegated, v1 with one disabled.
func TestCgroups(t *testing.T) {
	root := t.TempDir()
	put(t, root, "proc/self/mounts", []byte("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n"))
	put(t, root, "sys/fs/cgroup/cgroup.controllers", []byte("cpuset cpu io memory\n"))
	put(t, root, "proc/cgroups", []byte("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t0\t1\t1\ncpu\t0\t1\t1\nmemory\t0\t1\t1\npids\t0\t1\t1\nhugetlb\t0\t1\t1\n"))
	rs := (&Checker{Root: root}).cgroupChecks()
	if r := find(t, rs, "cgroups"); r.Status != OK || !strings.Contains(r.Detail, "v2") {
		t.Errorf("%s", r.Line())
	}
	if r := find(t, rs, "cgroup pids"); r.Status != Missing || !strings.Contains(r.Detail, "delegate") {
		t.Errorf("%s", r.Line())
	}
	if r := find(t, rs, "cgroup hugetlb"); r.Status != Warn {
		t.Errorf("%s", r.Line())
	}
	if r := find(t, rs, "cgroup memory"); r.Status != OK {
		t.Errorf("%s", r.Line())
	}

	put(t, root, "proc/self/mounts", []byte("cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\ncgroup /sys/fs/cgroup/cpuset cgroup rw,cpuset 0 0\ncgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\ncgroup /sys/fs/cgroup/devices cgroup rw,devices 0 0\n"))
	put(t, root, "proc/cgroups", []byte("cpuset\t1\t1\t1\ncpu\t2\t1\t1\ncpuacct\t2\t1\t1\nmemory\t0\t1\t0\npids\t3\t1\t1\ndevices\t4\t1\t1\n"))
	rs = (&Checker{Root: root}).cgroupChecks()
	if r := find(t, rs, "cgroups"); r.Status != OK || !strings.Contains(r.Detail, "v1") {
		t.Errorf("%s", r.Line())
	}
	if r := find(t, rs, "cgroup memory"); r.Status != Missing || !strings.Contains(r.Detail, "cgroup_disable") {
		t.Errorf("%s", r.Line())
	}
	if r := find(t, rs, "cgroup cpuacct"); r.Status != OK || !strings.Contains(r.Detail, "/sys/fs/cgroup/cpu,cpuacct") {
		t.Errorf("%s", r.Line())
	}

	put(t, root, "proc/self/mounts", []byte("proc /proc proc rw 0 0\n"))
	if r := find(t, (&Checker{Root: root}).cgroupChecks(), "cgroups"); r.Status != Missing {
		t.Errorf("no cgroup mounts: %s", r.Line())
	}
}

// TestStatusFields: seccomp, oom_score_adj and swap from /proc files.
func TestStatusFields(t *testing.T) {
	root := t.TempDir()
	c := &Checker{Root: root}
	put(t, root, "proc/self/status", []byte("Name:\tdistro\nCapEff:\t000001fffeffffff\nSeccomp:\t0\n"))
	put(t, root, "proc/sys/kernel/seccomp/actions_avail", []byte("kill_process allow\n"))
	put(t, root, "proc/swaps", []byte("Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1024 0 -2\n"))
	if r := c.oomCheck(); r.Status != Warn || !strings.Contains(r.Detail, "containerd will restrict oom_score_adj") {
		t.Errorf("%s", r.Line())
	}
	if r := c.seccompCheck(); r.Status != OK {
		t.Errorf("%s", r.Line())
	}
	if r := c.swapCheck(); r.Status != Warn || !strings.Contains(r.Detail, "/swapfile") {
		t.Errorf("%s", r.Line())
	}
	put(t, root, "proc/self/status", []byte("Name:\tdistro\nCapEff:\t000001ffffffffff\nSeccomp:\t2\n"))
	put(t, root, "proc/swaps", []byte("Filename\tType\tSize\tUsed\tPriority\n"))
	if r := c.oomCheck(); r.Status != OK {
		t.Errorf("%s", r.Line())
	}
	if r := c.seccompCheck(); r.Status != Warn {
		t.Errorf("seccomp mode 2: %s", r.Line())
	}
	if r := c.swapCheck(); r.Status != OK {
		t.Errorf("%s", r.Line())
	}
	put(t, root, "proc/self/status", []byte("Name:\tdistro\n"))
	if r := c.seccompCheck(); r.Status != Missing {
		t.Errorf("no Seccomp field: %s", r.Line())
	}
}

// TestTools: tools are looked up in PATH below the root.
func TestTools(t *testing.T) {
	root := t.TempDir()
	for _, n := range []string{"iptables", "iptables-save", "iptables-restore", "mount"} {
		put(t, root, "bin/"+n, []byte("#!/bin/sh\n"))
		os.Chmod(filepath.Join(root, "bin", n), 0o755)
	}
	put(t, root, "bin/umount", []byte("not executable"))
	rs := (&Checker{Root: root, PATH: "/bin"}).toolChecks("iptables")
	for name, want := range map[string]Status{"tool iptables": OK, "tool mount": OK, "tool umount": Missing, "tool ip6tables": Warn, "tool nft": Warn} {
		if r := find(t, rs, name); r.Status != want {
			t.Errorf("got %s, want %s", r.Line(), want)
		}
	}
	rs = (&Checker{Root: root, PATH: "/bin"}).toolChecks("nftables")
	if r := find(t, rs, "tool nft"); r.Status != Missing {
		t.Errorf("nftables mode: %s", r.Line())
	}
}

// TestPorts: a port in use, one given twice, a free one; bad numbers are
// refused.
func TestPorts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	freePort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	rs := checkPorts([]Port{
		{"--https-listen-port", "127.0.0.1", busy, Missing, true},
		{"--etcd-client-port", "127.0.0.1", freePort, Missing, true},
		{"--etcd-peer-port", "127.0.0.1", freePort, Missing, true},
	})
	if rs[0].Status != Missing || !strings.Contains(rs[0].Detail, "already in use") || !strings.Contains(rs[0].Name, "--https-listen-port") {
		t.Errorf("busy: %s", rs[0].Line())
	}
	if rs[1].Status != OK {
		t.Errorf("free: %s", rs[1].Line())
	}
	if rs[2].Status != Missing || !strings.Contains(rs[2].Detail, "also used by --etcd-client-port") {
		t.Errorf("twice: %s", rs[2].Line())
	}
	// At start only the ports marked AtStart count.
	if err := Preflight(Options{Ports: []Port{{"kubelet", "127.0.0.1", busy, Missing, false}}}); err != nil {
		t.Errorf("Preflight checked a node port: %v", err)
	}
	if err := Preflight(Options{Ports: []Port{{"--https-listen-port", "127.0.0.1", busy, Missing, true}}}); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Errorf("Preflight with the apiserver port taken: %v", err)
	}
	if err := (Options{Ports: []Port{{"--lb-server-port", "127.0.0.1", 70000, Missing, false}}}).Validate(); err == nil || !strings.Contains(err.Error(), "--lb-server-port 70000") {
		t.Errorf("Validate: %v", err)
	}
	if err := (Options{Node: true, ProxyMode: "ipvs"}).Validate(); err == nil {
		t.Error("Validate accepted --kube-proxy-mode ipvs")
	}
}
