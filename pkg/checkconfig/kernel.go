package checkconfig

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"os"
	"path"
	"strings"
)

// kernelInfo is what the kernel says about how it was built: its config
// (when /proc/config.gz or /boot/config-<release> is there) and the
// modules it can load (when /lib/modules/<release> is there).
type kernelInfo struct {
	release   string
	config    map[string]string // CONFIG_X -> y, m
	configSrc string            // where config came from ("" when unknown)
	modDir    string            // /lib/modules/<release>, "" when absent
	builtin   map[string]bool   // module names built in (modules.builtin)
	loadable  map[string]bool   // module names that can be loaded (modules.dep)
}

func (c *Checker) kernelInfo() *kernelInfo {
	if c.kernel != nil {
		return c.kernel
	}
	k := &kernelInfo{}
	rel, _ := c.read("/proc/sys/kernel/osrelease")
	k.release = strings.TrimSpace(rel)
	k.config, k.configSrc = c.kernelConfig(k.release)
	if k.release != "" {
		dir := "/lib/modules/" + k.release
		if c.exists(dir) {
			k.modDir = dir
			k.builtin = c.moduleNames(dir + "/modules.builtin")
			k.loadable = c.moduleNames(dir + "/modules.dep")
		}
	}
	c.kernel = k
	return k
}

// kernelConfig reads the running kernel's build config.
func (c *Checker) kernelConfig(release string) (map[string]string, string) {
	var sources []string
	sources = append(sources, "/proc/config.gz")
	if release != "" {
		sources = append(sources, "/boot/config-"+release)
	}
	for _, src := range sources {
		f, err := os.Open(c.path(src))
		if err != nil {
			continue
		}
		var r *bufio.Scanner
		if strings.HasSuffix(src, ".gz") {
			gz, err := gzip.NewReader(f)
			if err != nil {
				f.Close()
				continue
			}
			r = bufio.NewScanner(gz)
		} else {
			r = bufio.NewScanner(f)
		}
		cfg := map[string]string{}
		for r.Scan() {
			line := r.Text()
			if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
				cfg[k] = v
			}
		}
		f.Close()
		if r.Err() == nil && len(cfg) > 0 {
			return cfg, src
		}
	}
	return nil, ""
}

// moduleNames reads the module names of modules.builtin or modules.dep
// (paths like kernel/fs/overlayfs/overlay.ko.zst; '-' and '_' are one).
func (c *Checker) moduleNames(file string) map[string]bool {
	data, err := c.read(file)
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, line := range strings.Split(data, "\n") {
		p, _, _ := strings.Cut(line, ":")
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		name, _, _ := strings.Cut(path.Base(p), ".ko")
		out[strings.ReplaceAll(name, "-", "_")] = true
	}
	return out
}

// feature is a kernel feature and where it shows.
type feature struct {
	name    string
	configs []string // any of these built in or as a module will do
	modules []string // the modules that provide it
	// seen reports where the running kernel shows the feature, "" when it
	// does not.
	seen func(c *Checker) string
	// sure: a kernel that has the feature always shows it where seen looks,
	// so not seeing it, with nothing to load it from, means it is missing.
	sure bool
	// manual: a module the kernel does not load by itself.
	manual bool
	level  Status // the status when missing: Missing or Warn
	why    string // what needs it
}

// fileHas returns a seen func: file has a line whose fields include word.
func fileHas(file, word string) func(*Checker) string {
	return func(c *Checker) string {
		data, err := c.read(file)
		if err != nil {
			return ""
		}
		for _, line := range strings.Split(data, "\n") {
			for _, f := range strings.Fields(line) {
				if f == word {
					return fmt.Sprintf("%s in %s", word, file)
				}
			}
		}
		return ""
	}
}

// anyExists returns a seen func: one of the paths exists.
func anyExists(paths ...string) func(*Checker) string {
	return func(c *Checker) string {
		for _, p := range paths {
			if c.exists(p) {
				return p
			}
		}
		return ""
	}
}

func xtMatch(name, why string) feature {
	cfg := "CONFIG_NETFILTER_XT_MATCH_" + strings.ToUpper(name)
	return feature{
		name: "iptables match " + name, configs: []string{cfg}, modules: []string{"xt_" + name},
		seen: fileHas("/proc/net/ip_tables_matches", name), level: Missing, why: why,
	}
}

// nodeFeatures are the kernel features a node needs.
func nodeFeatures(proxyMode string) []feature {
	fs := []feature{
		{name: "overlayfs", configs: []string{"CONFIG_OVERLAY_FS"}, modules: []string{"overlay"},
			seen: fileHas("/proc/filesystems", "overlay"), sure: true, level: Missing, why: "containerd's snapshotter"},
		{name: "bridge", configs: []string{"CONFIG_BRIDGE"}, modules: []string{"bridge"},
			seen: anyExists("/sys/module/bridge", "/proc/sys/net/bridge"), level: Missing, why: "the pod bridge cni0"},
		{name: "br_netfilter", configs: []string{"CONFIG_BRIDGE_NETFILTER"}, modules: []string{"br_netfilter"},
			seen: anyExists("/proc/sys/net/bridge/bridge-nf-call-iptables"), sure: true, manual: true, level: Missing,
			why: "Services reached from a pod on the same bridge"},
		{name: "vxlan", configs: []string{"CONFIG_VXLAN"}, modules: []string{"vxlan"},
			seen: anyExists("/sys/module/vxlan"), sure: true, level: Missing, why: "flannel's overlay flannel.1"},
		{name: "veth", configs: []string{"CONFIG_VETH"}, modules: []string{"veth"},
			seen: anyExists("/sys/module/veth"), level: Missing, why: "pods' network interfaces"},
		{name: "nf_tables", configs: []string{"CONFIG_NF_TABLES"}, modules: []string{"nf_tables"},
			seen: anyExists("/sys/module/nf_tables"), level: Missing, why: "iptables-nft, kube-proxy's nftables mode, network policies"},
		{name: "iptables (x_tables)", configs: []string{"CONFIG_IP_NF_IPTABLES", "CONFIG_NFT_COMPAT"}, modules: []string{"ip_tables", "nft_compat"},
			seen: anyExists("/proc/net/ip_tables_names"), level: Missing, why: "kube-proxy, flannel and distro's pod network rules"},
		xtMatch("conntrack", "kube-proxy"),
		xtMatch("comment", "kube-proxy, distro's rules"),
		xtMatch("statistic", "kube-proxy's load balancing"),
		xtMatch("addrtype", "kube-proxy's NodePorts"),
		{name: "iptables match mark", configs: []string{"CONFIG_NETFILTER_XT_MARK", "CONFIG_NETFILTER_XT_MATCH_MARK"}, modules: []string{"xt_mark"},
			seen: fileHas("/proc/net/ip_tables_matches", "mark"), level: Missing, why: "kube-proxy's masquerade marks"},
		{name: "iptables MASQUERADE", configs: []string{"CONFIG_NETFILTER_XT_TARGET_MASQUERADE", "CONFIG_IP_NF_TARGET_MASQUERADE"}, modules: []string{"xt_MASQUERADE", "ipt_MASQUERADE"},
			seen: fileHas("/proc/net/ip_tables_targets", "MASQUERADE"), level: Missing, why: "pod traffic leaving the cluster"},
		{name: "iptables nat (DNAT/SNAT)", configs: []string{"CONFIG_NETFILTER_XT_NAT", "CONFIG_IP_NF_NAT"}, modules: []string{"xt_nat", "iptable_nat"},
			seen: fileHas("/proc/net/ip_tables_targets", "DNAT"), level: Missing, why: "Services"},
		{name: "iptables REJECT", configs: []string{"CONFIG_IP_NF_TARGET_REJECT"}, modules: []string{"ipt_REJECT"},
			seen: fileHas("/proc/net/ip_tables_targets", "REJECT"), level: Missing, why: "Services without endpoints"},
		{name: "conntrack", configs: []string{"CONFIG_NF_CONNTRACK"}, modules: []string{"nf_conntrack"},
			seen: anyExists("/sys/module/nf_conntrack", "/proc/sys/net/netfilter/nf_conntrack_max"), sure: true, level: Missing,
			why: "Services, NAT"},
	}
	nft := Warn
	if proxyMode == "nftables" {
		nft = Missing
	}
	for _, n := range []struct{ name, cfg, mod string }{
		{"nftables ct", "CONFIG_NFT_CT", "nft_ct"},
		{"nftables nat", "CONFIG_NFT_NAT", "nft_nat"},
		{"nftables masquerade", "CONFIG_NFT_MASQ", "nft_masq"},
	} {
		fs = append(fs, feature{name: n.name, configs: []string{n.cfg}, modules: []string{n.mod},
			seen: func(*Checker) string { return "" }, level: nft, why: "kube-proxy's nftables mode"})
	}
	return fs
}

func (c *Checker) kernelChecks(proxyMode string) []Result {
	var out []Result
	for _, f := range nodeFeatures(proxyMode) {
		out = append(out, c.checkFeature(f))
	}
	return out
}

func (c *Checker) checkFeature(f feature) Result {
	if where := f.seen(c); where != "" {
		return Result{f.name, OK, where}
	}
	k := c.kernelInfo()
	modDir := k.modDir
	if modDir == "" {
		modDir = "/lib/modules/" + k.release
	}
	loadable := ""
	for _, m := range f.modules {
		if k.loadable[normMod(m)] {
			loadable = m
			break
		}
	}
	notLoaded := func(how string) Result {
		if f.manual {
			return Result{f.name, f.level, fmt.Sprintf("module %s (%s) is not loaded: run `modprobe %s` and list it in /etc/modules-load.d/ (needed for %s)", loadable, how, loadable, f.why)}
		}
		return Result{f.name, OK, fmt.Sprintf("module %s (%s), loaded on first use", loadable, how)}
	}
	if k.config != nil {
		var mod []string
		for _, cfg := range f.configs {
			switch k.config[cfg] {
			case "y":
				return Result{f.name, OK, fmt.Sprintf("built in (%s=y in %s)", cfg, k.configSrc)}
			case "m":
				mod = append(mod, cfg)
			}
		}
		if len(mod) > 0 {
			if loadable != "" {
				return notLoaded(mod[0] + "=m")
			}
			return Result{f.name, f.level, fmt.Sprintf("%s=m in %s but no module %s in %s: install the kernel's modules (needed for %s)", mod[0], k.configSrc, strings.Join(f.modules, " or "), modDir, f.why)}
		}
		return Result{f.name, f.level, fmt.Sprintf("the kernel is built without %s (%s): use a kernel with it (needed for %s)", strings.Join(f.configs, " or "), k.configSrc, f.why)}
	}
	for _, m := range f.modules {
		if k.builtin[normMod(m)] {
			return Result{f.name, OK, fmt.Sprintf("built in (%s/modules.builtin)", modDir)}
		}
	}
	if loadable != "" {
		return notLoaded(modDir)
	}
	if k.modDir != "" || f.sure {
		return Result{f.name, f.level, fmt.Sprintf("not in the running kernel and no module %s in %s: use a kernel with %s (needed for %s)", strings.Join(f.modules, " or "), modDir, strings.Join(f.configs, " or "), f.why)}
	}
	return Result{f.name, Warn, fmt.Sprintf("cannot tell: no kernel config (/proc/config.gz, /boot/config-%s) and no %s; distro fails at start if %s is missing (needed for %s)", k.release, modDir, strings.Join(f.configs, " or "), f.why)}
}

func normMod(m string) string { return strings.ReplaceAll(m, "-", "_") }
