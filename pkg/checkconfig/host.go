package checkconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroup controllers the node uses: required ones, then the ones it runs
// without (with less).
var (
	cgroupV1Required = []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "devices"}
	cgroupV1Optional = []string{"freezer", "blkio", "hugetlb"}
	cgroupV2Required = []string{"cpu", "cpuset", "memory", "pids"}
	cgroupV2Optional = []string{"io", "hugetlb"}
	cgroupWhy        = map[string]string{
		"cpu": "CPU requests and limits", "cpuacct": "CPU usage of pods", "cpuset": "the kubelet's CPU manager",
		"memory": "memory limits and eviction", "pids": "pod PID limits", "devices": "containers' device access (runc)",
		"freezer": "runc freezing a container's processes", "blkio": "I/O statistics", "io": "I/O statistics",
		"hugetlb": "hugepage limits",
	}
)

// cgroupChecks reads the cgroup mounts (/proc/self/mounts) and the
// controllers the kernel has (/proc/cgroups).
func (c *Checker) cgroupChecks() []Result {
	mounts, err := c.read("/proc/self/mounts")
	if err != nil {
		return []Result{{"cgroups", Missing, fmt.Sprintf("cannot read /proc/self/mounts: %v", unwrap(err))}}
	}
	unified := false
	v1 := map[string]string{} // controller -> mount point
	for _, line := range strings.Split(mounts, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		switch f[2] {
		case "cgroup2":
			if f[1] == "/sys/fs/cgroup" {
				unified = true
			}
		case "cgroup":
			for _, opt := range strings.Split(f[3], ",") {
				if _, known := cgroupWhy[opt]; known {
					v1[opt] = f[1]
				}
			}
		}
	}
	kernel := map[string]bool{} // controller -> enabled, from /proc/cgroups
	if data, err := c.read("/proc/cgroups"); err == nil {
		for _, line := range strings.Split(data, "\n") {
			f := strings.Fields(line)
			if len(f) == 4 && !strings.HasPrefix(f[0], "#") {
				kernel[f[0]] = f[3] == "1"
			}
		}
	}
	absent := func(ctl, where string) string {
		if on, listed := kernel[ctl]; listed && !on {
			return fmt.Sprintf("disabled in /proc/cgroups (cgroup_disable= on the kernel command line?): remove that (needed for %s)", cgroupWhy[ctl])
		}
		return where + fmt.Sprintf(" (needed for %s)", cgroupWhy[ctl])
	}

	var out []Result
	var required, optional []string
	have := map[string]string{}
	switch {
	case unified:
		data, err := c.read("/sys/fs/cgroup/cgroup.controllers")
		if err != nil {
			return []Result{{"cgroups", Missing, fmt.Sprintf("cgroup v2 at /sys/fs/cgroup but cannot read cgroup.controllers: %v", unwrap(err))}}
		}
		for _, ctl := range strings.Fields(data) {
			have[ctl] = "/sys/fs/cgroup/cgroup.controllers"
		}
		out = append(out, Result{"cgroups", OK, "v2 (unified hierarchy at /sys/fs/cgroup)"})
		required, optional = cgroupV2Required, cgroupV2Optional
	case len(v1) > 0:
		for ctl, mnt := range v1 {
			have[ctl] = "mounted at " + mnt
		}
		out = append(out, Result{"cgroups", OK, "v1 (distro runs the kubelet with failCgroupV1: false and the cgroupfs driver)"})
		required, optional = cgroupV1Required, cgroupV1Optional
	default:
		return []Result{{"cgroups", Missing, "no cgroup filesystem mounted at /sys/fs/cgroup (see /proc/self/mounts): mount cgroup2 there (mount -t cgroup2 none /sys/fs/cgroup)"}}
	}
	for _, set := range []struct {
		ctls  []string
		level Status
	}{{required, Missing}, {optional, Warn}} {
		for _, ctl := range set.ctls {
			name := "cgroup " + ctl
			if where, ok := have[ctl]; ok {
				out = append(out, Result{name, OK, where})
				continue
			}
			where := "not mounted under /sys/fs/cgroup"
			if unified {
				where = "not in /sys/fs/cgroup/cgroup.controllers (inside a container: delegate it to the container)"
			}
			if _, listed := kernel[ctl]; !listed && len(kernel) > 0 && ctl != "io" {
				where = "the kernel has no such controller"
			}
			out = append(out, Result{name, set.level, absent(ctl, where)})
		}
	}
	return out
}

// namespaceChecks looks for /proc/self/ns/<type>.
func (c *Checker) namespaceChecks() []Result {
	var out []Result
	for _, ns := range []struct {
		file, name, config, why string
		level                   Status
	}{
		{"mnt", "mount", "", "every container", Missing},
		{"pid", "pid", "CONFIG_PID_NS", "every container", Missing},
		{"net", "net", "CONFIG_NET_NS", "every pod", Missing},
		{"ipc", "ipc", "CONFIG_IPC_NS", "every pod", Missing},
		{"uts", "uts", "CONFIG_UTS_NS", "every pod", Missing},
		{"user", "user", "CONFIG_USER_NS", "pods with hostUsers: false", Warn},
		{"cgroup", "cgroup", "CONFIG_CGROUPS", "containers' own cgroup view", Warn},
	} {
		name := "namespace " + ns.name
		p := "/proc/self/ns/" + ns.file
		if c.lexists(p) {
			out = append(out, Result{name, OK, p})
			continue
		}
		cfg := ""
		if ns.config != "" {
			cfg = " (" + ns.config + ")"
		}
		out = append(out, Result{name, ns.level, fmt.Sprintf("no %s: use a kernel with %s namespaces%s (needed for %s)", p, ns.name, cfg, ns.why)})
	}
	return out
}

// seccompCheck reads the Seccomp field of /proc/self/status (there when
// the kernel has seccomp) and /proc/sys/kernel/seccomp (filter mode).
func (c *Checker) seccompCheck() Result {
	status, err := c.read("/proc/self/status")
	if err != nil {
		return Result{"seccomp", Missing, fmt.Sprintf("cannot read /proc/self/status: %v", unwrap(err))}
	}
	mode, ok := field(status, "Seccomp")
	if !ok {
		return Result{"seccomp", Missing, "no Seccomp field in /proc/self/status: use a kernel with CONFIG_SECCOMP (needed for pods' seccomp profiles)"}
	}
	if !c.exists("/proc/sys/kernel/seccomp/actions_avail") {
		return Result{"seccomp", Missing, "no /proc/sys/kernel/seccomp/actions_avail: use a kernel with CONFIG_SECCOMP_FILTER (needed for pods' seccomp profiles)"}
	}
	if mode == "2" {
		return Result{"seccomp", Warn, "distro runs under a seccomp filter itself (Seccomp: 2, e.g. a container's default profile): every container inherits it; in Docker use --security-opt seccomp=unconfined"}
	}
	return Result{"seccomp", OK, "filter mode available (/proc/sys/kernel/seccomp/actions_avail)"}
}

// sysctl is a setting distro or the kubelet sets at start.
type sysctl struct {
	key, want string
}

func (s sysctl) file() string { return "/proc/sys/" + strings.ReplaceAll(s.key, ".", "/") }

// sysctlChecks: each setting is already what the node sets, or can be set.
func (c *Checker) sysctlChecks() []Result {
	var out []Result
	for _, s := range []sysctl{
		{"net.ipv4.ip_forward", "1"},
		{"net.bridge.bridge-nf-call-iptables", "1"},
		{"net.bridge.bridge-nf-call-ip6tables", "1"},
	} {
		name := "sysctl " + s.key
		cur, err := c.read(s.file())
		switch {
		case err != nil && strings.HasPrefix(s.key, "net.bridge."):
			out = append(out, Result{name, Missing, fmt.Sprintf("no %s: br_netfilter is not loaded (modprobe br_netfilter; list it in /etc/modules-load.d/)", s.file())})
		case err != nil:
			out = append(out, Result{name, Missing, fmt.Sprintf("cannot read %s: %v", s.file(), unwrap(err))})
		case strings.TrimSpace(cur) == s.want:
			out = append(out, Result{name, OK, s.want})
		case c.writable(s.file()):
			out = append(out, Result{name, OK, fmt.Sprintf("%s, writable: distro sets it to %s at start", strings.TrimSpace(cur), s.want)})
		default:
			out = append(out, Result{name, Missing, fmt.Sprintf("is %s and %s is not writable here: set it to %s (sysctl -w %s=%s), or in a container give it a writable /proc/sys", strings.TrimSpace(cur), s.file(), s.want, s.key, s.want)})
		}
	}
	// What the kubelet sets (protectKernelDefaults: false): it refuses to
	// start when one of them differs and cannot be written.
	var stuck []string
	for _, s := range []sysctl{
		{"vm.overcommit_memory", "1"}, {"vm.panic_on_oom", "0"}, {"kernel.panic", "10"},
		{"kernel.panic_on_oops", "1"}, {"kernel.keys.root_maxkeys", "1000000"}, {"kernel.keys.root_maxbytes", "25000000"},
	} {
		cur, err := c.read(s.file())
		if err == nil && strings.TrimSpace(cur) == s.want || c.writable(s.file()) {
			continue
		}
		stuck = append(stuck, fmt.Sprintf("%s=%s", s.key, s.want))
	}
	if len(stuck) > 0 {
		out = append(out, Result{"sysctls the kubelet sets", Missing, fmt.Sprintf("not set and not writable: %s; set them on the host (sysctl -w), or in a container give it a writable /proc/sys", strings.Join(stuck, " "))})
	} else {
		out = append(out, Result{"sysctls the kubelet sets", OK, "vm.overcommit_memory, vm.panic_on_oom, kernel.panic, kernel.panic_on_oops, kernel.keys.root_max*: set or writable"})
	}
	return out
}

// swapCheck reads /proc/swaps.
func (c *Checker) swapCheck() Result {
	data, err := c.read("/proc/swaps")
	if err != nil {
		return Result{"swap", Warn, fmt.Sprintf("cannot read /proc/swaps: %v", unwrap(err))}
	}
	var on []string
	for i, line := range strings.Split(strings.TrimSpace(data), "\n") {
		if f := strings.Fields(line); i > 0 && len(f) > 0 {
			on = append(on, f[0])
		}
	}
	if len(on) == 0 {
		return Result{"swap", OK, "off"}
	}
	return Result{"swap", Warn, fmt.Sprintf("on (%s): the kubelet starts anyway (failSwapOn: false) and pods get no swap; turn it off (swapoff -a) for predictable memory limits", strings.Join(on, ", "))}
}

// oomCheck reads CapEff in /proc/self/status: without CAP_SYS_RESOURCE no
// process can lower its oom_score_adj, so containerd is configured to keep
// pods' values at or above its own (as pkg/node/containerd finds at start).
func (c *Checker) oomCheck() Result {
	const name = "oom_score_adj (CAP_SYS_RESOURCE)"
	status, err := c.read("/proc/self/status")
	if err != nil {
		return Result{name, Warn, fmt.Sprintf("cannot read /proc/self/status: %v", unwrap(err))}
	}
	v, ok := field(status, "CapEff")
	caps, perr := strconv.ParseUint(v, 16, 64)
	if !ok || perr != nil {
		return Result{name, Warn, "no CapEff in /proc/self/status: cannot tell whether containerd will restrict oom_score_adj"}
	}
	const capSysResource = 24
	if caps&(1<<capSysResource) == 0 {
		return Result{name, Warn, "containerd will restrict oom_score_adj: this process lacks CAP_SYS_RESOURCE (a container, unprivileged LXC, or a host that withholds it), so pods' oom_score_adj stays at or above distro's own"}
	}
	return Result{name, OK, "held: pods get the oom_score_adj the kubelet asks for"}
}

// tool is a program the node runs.
type tool struct {
	name  string
	level Status
	why   string
}

// toolChecks looks for the host programs distro's node runs: iptables (its
// own rules, kube-proxy, flannel, the portmap plugin), mount and umount
// (the kubelet's volumes), nft (network policies, kube-proxy's nftables
// mode).
func (c *Checker) toolChecks(proxyMode string) []Result {
	nft := tool{"nft", Warn, "NetworkPolicy enforcement, and kube-proxy with --kube-proxy-mode nftables"}
	if proxyMode == "nftables" {
		nft.level = Missing
	}
	tools := []tool{
		{"iptables", Missing, "distro's pod network rules, kube-proxy, flannel"},
		{"iptables-save", Missing, "kube-proxy"},
		{"iptables-restore", Missing, "kube-proxy, flannel"},
		{"ip6tables", Warn, "IPv6 Service rules (without it kube-proxy runs IPv4 only)"},
		{"ip6tables-save", Warn, "IPv6 Service rules"},
		{"ip6tables-restore", Warn, "IPv6 Service rules"},
		nft,
		{"mount", Missing, "the kubelet's volumes"},
		{"umount", Missing, "the kubelet's volumes"},
	}
	path := c.PATH
	if path == "" {
		path = os.Getenv("PATH")
	}
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	var out []Result
	for _, t := range tools {
		found := ""
		for _, dir := range filepath.SplitList(path) {
			if dir == "" || !filepath.IsAbs(dir) {
				continue
			}
			p := filepath.Join(dir, t.name)
			if fi, err := os.Stat(c.path(p)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				found = p
				break
			}
		}
		name := "tool " + t.name
		if found != "" {
			out = append(out, Result{name, OK, found})
			continue
		}
		out = append(out, Result{name, t.level, fmt.Sprintf("not found in PATH (%s): install it (needed for %s)", path, t.why)})
	}
	return out
}

// unwrap drops the operation and path of a file error: the message names
// the file itself.
func unwrap(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
