// Package checkconfig checks a host for what a distro node needs: kernel
// features, cgroups, namespaces, seccomp, sysctls, host tools and free
// ports. `distro check-config` prints every check; `distro server` and
// `distro agent` run the same checks at start and refuse to start on the
// first one that is missing.
//
// Every file is read below Checker.Root, so a test can point the checks at
// a copied or altered tree. The kernel needs no /lib/modules: features are
// seen where the running kernel shows them (/proc/filesystems, /sys/module,
// /proc/net, /proc/sys), else in its build config (/proc/config.gz or
// /boot/config-<release>), else in /lib/modules/<release>.
package checkconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"
)

// Status is the outcome of one check.
type Status int

const (
	OK      Status = iota
	Warn           // the node runs, with a limitation
	Missing        // the node cannot run: distro refuses to start
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	}
	return "missing"
}

// Result is one check's outcome: Detail says what was seen and, when not
// ok, what to do.
type Result struct {
	Name   string
	Status Status
	Detail string
}

// Line renders the result as check-config prints it.
func (r Result) Line() string {
	return fmt.Sprintf("%-8s %-42s %s", r.Status, r.Name, r.Detail)
}

// Err renders a missing result as the one-line reason a start is refused.
func (r Result) Err() error {
	return fmt.Errorf("%s: %s (distro check-config lists every check)", r.Name, r.Detail)
}

// RootEnv names the environment variable that points the checks at another
// root (tests only).
const RootEnv = "DISTRO_CHECK_CONFIG_ROOT"

// Checker runs the checks against the tree under Root.
type Checker struct {
	Root string // "/" on a host
	// PATH is searched for host tools (below Root); empty means $PATH.
	PATH string

	kernel *kernelInfo // read once per Run
}

// New returns a checker of this host, or of $DISTRO_CHECK_CONFIG_ROOT when
// set.
func New() *Checker {
	root := os.Getenv(RootEnv)
	if root == "" {
		root = "/"
	}
	return &Checker{Root: root}
}

// Options say which checks apply: the node's (kernel, cgroups, tools,
// sysctls) and which ports must be free.
type Options struct {
	Node      bool   // a kubelet, containerd and pod network run here
	ProxyMode string // kube-proxy's mode: iptables or nftables
	Ports     []Port
}

// Run runs every check that applies, in a stable order.
func (c *Checker) Run(o Options) []Result {
	c.kernel = nil
	var out []Result
	if os.Geteuid() != 0 && c.Root == "/" {
		out = append(out, Result{"user", Warn, "not root: distro server and agent run as root, so checks of writable settings and free ports below may differ"})
	}
	if o.Node {
		out = append(out, c.kernelChecks(o.ProxyMode)...)
		out = append(out, c.cgroupChecks()...)
		out = append(out, c.namespaceChecks()...)
		out = append(out, c.seccompCheck())
		out = append(out, c.sysctlChecks()...)
		out = append(out, c.swapCheck(), c.oomCheck())
		out = append(out, c.toolChecks(o.ProxyMode)...)
	}
	out = append(out, checkPorts(o.Ports)...)
	return out
}

// Summary counts the results.
func Summary(rs []Result) (ok, warn, missing int) {
	for _, r := range rs {
		switch r.Status {
		case OK:
			ok++
		case Warn:
			warn++
		default:
			missing++
		}
	}
	return
}

// Preflight runs the checks at the start of a server or agent (those of
// the ports marked AtStart): warnings go to the log, the first missing
// check is returned as the error.
func Preflight(o Options) error {
	var ports []Port
	for _, p := range o.Ports {
		if p.AtStart {
			ports = append(ports, p)
		}
	}
	o.Ports = ports
	var first error
	for _, r := range New().Run(o) {
		switch r.Status {
		case Warn:
			klog.Warningf("check-config: %s: %s", r.Name, r.Detail)
		case Missing:
			if first == nil {
				first = r.Err()
			}
		}
	}
	return first
}

// path returns p below the root.
func (c *Checker) path(p string) string {
	if c.Root == "" || c.Root == "/" {
		return p
	}
	return filepath.Join(c.Root, p)
}

func (c *Checker) read(p string) (string, error) {
	b, err := os.ReadFile(c.path(p))
	return string(b), err
}

func (c *Checker) exists(p string) bool {
	_, err := os.Stat(c.path(p))
	return err == nil
}

// lexists is exists without following a last symlink (/proc/self/ns/*).
func (c *Checker) lexists(p string) bool {
	_, err := os.Lstat(c.path(p))
	return err == nil
}

// writable reports whether p can be opened for writing; nothing is written.
func (c *Checker) writable(p string) bool {
	f, err := os.OpenFile(c.path(p), os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// field returns the value of "key:" in a /proc status-style file.
func field(text, key string) (string, bool) {
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
