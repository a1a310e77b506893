// Package config holds distro's typed configuration, its defaults, the
// config file loader and validation. Every bad input is reported as one error
// that names the flag or key at fault.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/robfig/cron/v3"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	logsapi "k8s.io/component-base/logs/api/v1"

	"distro/pkg/datadir"
	"distro/pkg/node/registries"
)

// DefaultConfigFile is read when --config is not given and the file exists.
const DefaultConfigFile = "/etc/distro/config.yaml"

// Server is the configuration of `distro server`.
type Server struct {
	ConfigFile          string
	DataDir             string
	BindAddress         string
	AdvertiseAddress    string
	NodeIP              string
	HTTPSListenPort     int
	ClusterCIDR         string
	ServiceCIDR         string
	ClusterDNS          string
	ClusterDomain       string
	TLSSANs             []string
	Token               string
	WriteKubeconfig     string
	WriteKubeconfigMode string
	DisableAgent        bool
	Disable             []string
	EtcdClientPort      int
	EtcdPeerPort        int

	// High availability: the first server of a cluster, and the server a
	// new server joins through.
	ClusterInit bool
	JoinServer  string

	// etcd snapshots and restore.
	ClusterReset             bool
	ClusterResetRestorePath  string
	EtcdSnapshotScheduleCron string
	EtcdSnapshotRetention    int
	EtcdSnapshotDir          string
	EtcdDisableSnapshots     bool

	// Secrets encrypted at rest.
	SecretsEncryption         bool
	SecretsEncryptionProvider string

	// The apiserver's audit policy (default: distro's).
	AuditPolicyFile string

	KubeAPIServerArgs         []string
	KubeSchedulerArgs         []string
	KubeControllerManagerArgs []string
	EtcdArgs                  []string

	Node
}

// AddServerFlags binds the server flags to s, with their defaults.
func AddServerFlags(fs *pflag.FlagSet, s *Server) {
	fs.StringVarP(&s.ConfigFile, "config", "c", DefaultConfigFile, "config file (YAML, same keys as the long flags)")
	fs.StringVarP(&s.DataDir, "data-dir", "d", "/var/lib/distro", "folder that holds state")
	fs.StringVar(&s.BindAddress, "bind-address", "0.0.0.0", "address the apiserver listens on")
	fs.StringVar(&s.AdvertiseAddress, "advertise-address", "", "address the apiserver advertises to members of the cluster (default: node-ip)")
	fs.StringVar(&s.NodeIP, "node-ip", "", "IP address of this node (default: address of the default route's interface)")
	fs.IntVar(&s.HTTPSListenPort, "https-listen-port", 6443, "apiserver port")
	fs.StringVar(&s.ClusterCIDR, "cluster-cidr", "10.42.0.0/16", "network CIDR for pod IPs")
	fs.StringVar(&s.ServiceCIDR, "service-cidr", "10.43.0.0/16", "network CIDR for service IPs")
	fs.StringVar(&s.ClusterDNS, "cluster-dns", "10.43.0.10", "cluster DNS service IP (inside --service-cidr)")
	fs.StringVar(&s.ClusterDomain, "cluster-domain", "cluster.local", "cluster domain")
	fs.StringArrayVar(&s.TLSSANs, "tls-san", nil, "extra hostname or IP in the apiserver serving certificate (repeatable)")
	fs.StringVarP(&s.Token, "token", "t", "", "join secret (default: generated once and stored in <data-dir>/server/token)")
	fs.StringVarP(&s.WriteKubeconfig, "write-kubeconfig", "o", "/etc/distro/distro.yaml", "where to write the admin kubeconfig")
	fs.StringVar(&s.WriteKubeconfigMode, "write-kubeconfig-mode", "", "file mode of the admin kubeconfig, octal (default 0600)")
	fs.BoolVar(&s.DisableAgent, "disable-agent", false, "run only the control plane, no node")
	fs.StringSliceVar(&s.Disable, "disable", nil, "packaged add-ons not to deploy, and to remove if deployed: "+strings.Join(PackagedAddons, ", ")+" (comma-separated or repeated)")
	fs.IntVar(&s.EtcdClientPort, "etcd-client-port", 2379, "embedded etcd client port (loopback)")
	fs.IntVar(&s.EtcdPeerPort, "etcd-peer-port", 2380, "embedded etcd peer port (loopback)")
	fs.BoolVar(&s.ClusterInit, "cluster-init", false, "start a cluster other servers can join (etcd peers on the node IP)")
	fs.StringVar(&s.JoinServer, "server", "", "join the cluster of this server, https://<server>:6443 (with --token); only read on the first start")
	fs.BoolVar(&s.ClusterReset, "cluster-reset", false, "make this server's etcd member a one-member cluster (from its own data, or from --cluster-reset-restore-path), then exit")
	fs.StringVar(&s.ClusterResetRestorePath, "cluster-reset-restore-path", "", "etcd snapshot file to restore with --cluster-reset")
	fs.StringVar(&s.EtcdSnapshotScheduleCron, "etcd-snapshot-schedule-cron", "0 */12 * * *", "when to take scheduled etcd snapshots (cron format, or @every <duration>)")
	fs.IntVar(&s.EtcdSnapshotRetention, "etcd-snapshot-retention", 5, "number of scheduled etcd snapshots to keep")
	fs.StringVar(&s.EtcdSnapshotDir, "etcd-snapshot-dir", "", "folder of etcd snapshots (default <data-dir>/server/db/snapshots)")
	fs.BoolVar(&s.EtcdDisableSnapshots, "etcd-disable-snapshots", false, "take no scheduled etcd snapshots")
	fs.BoolVar(&s.SecretsEncryption, "secrets-encryption", true, "encrypt Secrets in etcd (false: store new ones in plain text; encrypted ones stay readable)")
	fs.StringVar(&s.SecretsEncryptionProvider, "secrets-encryption-provider", "aescbc", "cipher for Secrets at rest: aescbc or secretbox")
	fs.StringVar(&s.AuditPolicyFile, "audit-policy-file", "", "audit policy of the apiserver (default: distro's; the log is <data-dir>/server/logs/audit.log)")
	fs.StringArrayVar(&s.KubeAPIServerArgs, "kube-apiserver-arg", nil, "extra kube-apiserver flag as key=value (repeatable)")
	fs.StringArrayVar(&s.KubeSchedulerArgs, "kube-scheduler-arg", nil, "extra kube-scheduler flag as key=value (repeatable)")
	fs.StringArrayVar(&s.KubeControllerManagerArgs, "kube-controller-manager-arg", nil, "extra kube-controller-manager flag as key=value (repeatable)")
	fs.StringArrayVar(&s.EtcdArgs, "etcd-arg", nil, "extra etcd setting as key=value, keys as etcd's flags (repeatable)")
	AddNodeFlags(fs, &s.Node)
}

// PackagedAddons are the add-ons distro deploys unless --disable names them
// (manifests/<name>.yaml).
var PackagedAddons = []string{"coredns", "local-storage", "metrics-server"}

// Validate checks the values and fills in derived defaults (node IP,
// advertise address). It touches nothing on disk.
func (s *Server) Validate() error {
	if s.DataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	abs, err := filepath.Abs(s.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir %q: %v", s.DataDir, err)
	}
	s.DataDir = abs
	if err := validPort("--https-listen-port", s.HTTPSListenPort); err != nil {
		return err
	}
	if err := validPort("--etcd-client-port", s.EtcdClientPort); err != nil {
		return err
	}
	if err := validPort("--etcd-peer-port", s.EtcdPeerPort); err != nil {
		return err
	}
	if net.ParseIP(s.BindAddress) == nil {
		return fmt.Errorf("--bind-address %q is not an IP address", s.BindAddress)
	}
	_, cluster, err := net.ParseCIDR(s.ClusterCIDR)
	if err != nil {
		return fmt.Errorf("--cluster-cidr %q is not a valid CIDR", s.ClusterCIDR)
	}
	_, service, err := net.ParseCIDR(s.ServiceCIDR)
	if err != nil {
		return fmt.Errorf("--service-cidr %q is not a valid CIDR", s.ServiceCIDR)
	}
	if cluster.Contains(service.IP) || service.Contains(cluster.IP) {
		return fmt.Errorf("--cluster-cidr %s and --service-cidr %s overlap", s.ClusterCIDR, s.ServiceCIDR)
	}
	if ones, bits := service.Mask.Size(); bits-ones > 20 {
		return fmt.Errorf("--service-cidr %s is too large (at most /%d for this address family)", s.ServiceCIDR, bits-20)
	}
	if ones, bits := cluster.Mask.Size(); bits-ones < 8 && bits == 32 {
		return fmt.Errorf("--cluster-cidr %s is too small (at least a /24 is needed for one node)", s.ClusterCIDR)
	}
	dns := net.ParseIP(s.ClusterDNS)
	if dns == nil {
		return fmt.Errorf("--cluster-dns %q is not an IP address", s.ClusterDNS)
	}
	if !service.Contains(dns) {
		return fmt.Errorf("--cluster-dns %s is not inside --service-cidr %s", s.ClusterDNS, s.ServiceCIDR)
	}
	if s.ClusterDomain == "" || strings.ContainsAny(s.ClusterDomain, " /_") {
		return fmt.Errorf("--cluster-domain %q is not a valid DNS domain", s.ClusterDomain)
	}
	if s.WriteKubeconfigMode != "" {
		if _, err := s.KubeconfigMode(); err != nil {
			return err
		}
	}
	if s.NodeIP != "" && net.ParseIP(s.NodeIP) == nil {
		return fmt.Errorf("--node-ip %q is not an IP address", s.NodeIP)
	}
	if s.AdvertiseAddress != "" && net.ParseIP(s.AdvertiseAddress) == nil {
		return fmt.Errorf("--advertise-address %q is not an IP address", s.AdvertiseAddress)
	}
	for _, san := range s.TLSSANs {
		if san == "" || strings.ContainsAny(san, " /,") {
			return fmt.Errorf("--tls-san %q is not a hostname or IP address", san)
		}
	}
	for _, d := range s.Disable {
		if !slices.Contains(PackagedAddons, d) {
			return fmt.Errorf("--disable %q: not a packaged add-on (%s)", d, strings.Join(PackagedAddons, ", "))
		}
	}
	if strings.ContainsAny(s.Token, " \n:") && !strings.HasPrefix(s.Token, "K10") {
		return fmt.Errorf("--token must not contain spaces, newlines or ':'")
	}
	for name, args := range map[string][]string{
		"--kube-apiserver-arg":          s.KubeAPIServerArgs,
		"--kube-scheduler-arg":          s.KubeSchedulerArgs,
		"--kube-controller-manager-arg": s.KubeControllerManagerArgs,
		"--etcd-arg":                    s.EtcdArgs,
	} {
		if _, err := ParseArgs(name, args); err != nil {
			return err
		}
	}
	if p := s.SecretsEncryptionProvider; p != "aescbc" && p != "secretbox" {
		return fmt.Errorf("--secrets-encryption-provider %q: must be aescbc or secretbox", p)
	}
	if s.AuditPolicyFile != "" {
		if st, err := os.Stat(s.AuditPolicyFile); err != nil || st.IsDir() {
			return fmt.Errorf("--audit-policy-file %q: not a readable file", s.AuditPolicyFile)
		}
	}
	if err := s.validateSnapshots(); err != nil {
		return err
	}
	if s.JoinServer != "" {
		u, err := url.Parse(s.JoinServer)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("--server %q: want https://<host>:<port>", s.JoinServer)
		}
		if s.ClusterInit {
			return errors.New("--cluster-init and --server exclude each other: the first server starts the cluster, the others join it")
		}
		if s.Token == "" {
			return errors.New("--server needs --token (the token in <data-dir>/server/token on a server of the cluster)")
		}
	}
	if err := s.Node.Validate(); err != nil {
		return err
	}
	if err := s.Node.shareLogging(map[string]*[]string{
		"--kube-apiserver-arg": &s.KubeAPIServerArgs, "--kube-scheduler-arg": &s.KubeSchedulerArgs,
		"--kube-controller-manager-arg": &s.KubeControllerManagerArgs,
	}); err != nil {
		return err
	}
	if s.NodeIP == "" {
		ip, err := DefaultIP()
		if err != nil {
			return fmt.Errorf("--node-ip not given and none found: %v", err)
		}
		s.NodeIP = ip.String()
	}
	if s.AdvertiseAddress == "" {
		s.AdvertiseAddress = s.NodeIP
	}
	return nil
}

// validateSnapshots checks the etcd snapshot and restore settings and
// fills in the default snapshot folder.
func (s *Server) validateSnapshots() error {
	if _, err := cron.ParseStandard(s.EtcdSnapshotScheduleCron); err != nil {
		return fmt.Errorf("--etcd-snapshot-schedule-cron %q: %v", s.EtcdSnapshotScheduleCron, err)
	}
	if s.EtcdSnapshotRetention < 1 {
		return fmt.Errorf("--etcd-snapshot-retention %d: keep at least 1 snapshot", s.EtcdSnapshotRetention)
	}
	if s.EtcdSnapshotDir == "" {
		s.EtcdSnapshotDir = datadir.NewServer(s.DataDir).Snapshots
	}
	abs, err := filepath.Abs(s.EtcdSnapshotDir)
	if err != nil {
		return fmt.Errorf("--etcd-snapshot-dir %q: %v", s.EtcdSnapshotDir, err)
	}
	s.EtcdSnapshotDir = abs
	if s.ClusterResetRestorePath != "" {
		if !s.ClusterReset {
			return errors.New("--cluster-reset-restore-path is only used with --cluster-reset")
		}
		if fi, err := os.Stat(s.ClusterResetRestorePath); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("--cluster-reset-restore-path %q: not a readable file", s.ClusterResetRestorePath)
		}
		abs, err := filepath.Abs(s.ClusterResetRestorePath)
		if err != nil {
			return fmt.Errorf("--cluster-reset-restore-path %q: %v", s.ClusterResetRestorePath, err)
		}
		s.ClusterResetRestorePath = abs
	}
	return nil
}

// KubeconfigMode returns the file mode for the admin kubeconfig.
func (s *Server) KubeconfigMode() (os.FileMode, error) {
	if s.WriteKubeconfigMode == "" {
		return 0o600, nil
	}
	m, err := strconv.ParseUint(s.WriteKubeconfigMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("--write-kubeconfig-mode %q is not an octal file mode like 0600", s.WriteKubeconfigMode)
	}
	return os.FileMode(m), nil
}

func validPort(name string, p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("%s %d is not a port number (1-65535)", name, p)
	}
	return nil
}

// Arg is one key=value pass-through flag.
type Arg struct{ Key, Value string }

// ParseArgs splits repeatable key=value flags; a leading "--" on the key is
// accepted. A key without '=' means "true" (a boolean flag).
func ParseArgs(flagName string, args []string) ([]Arg, error) {
	var out []Arg
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		k = strings.TrimLeft(k, "-")
		if k == "" {
			return nil, fmt.Errorf("%s %q: expected key=value", flagName, a)
		}
		if !ok {
			v = "true"
		}
		out = append(out, Arg{k, v})
	}
	return out, nil
}

// DefaultIP returns the IPv4 address of the interface that holds the
// default route, or the first global unicast address.
func DefaultIP() (net.IP, error) {
	if ip := defaultRouteIP(); ip != nil {
		return ip, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() && n.IP.To4() != nil {
			return n.IP, nil
		}
	}
	return nil, errors.New("no global unicast IPv4 address on any interface")
}

// defaultRouteIP reads /proc/net/route for the default route's interface.
func defaultRouteIP() net.IP {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		iface, err := net.InterfaceByName(f[0])
		if err != nil {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP
			}
		}
	}
	return nil
}

// FlagList renders a flag map as sorted --key=value arguments.
func FlagList(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, "--"+k+"="+m[k])
	}
	return out
}

// Node is the configuration of the node side, shared by server and agent.
type Node struct {
	NodeName      string
	NodeLabels    []string
	NodeTaints    []string
	KubeletArgs   []string
	KubeProxyArgs []string
	ProxyMode     string
	ResolvConf    string
	// DisableNetworkPolicy turns NetworkPolicy enforcement off (and
	// removes the rules an earlier run left).
	DisableNetworkPolicy bool
	// RegistriesConfig is registries.yaml: mirrors and credentials for
	// containerd (a missing file at the default path means none).
	RegistriesConfig string
	// DisableEmbeddedRegistry turns the peer-to-peer registry mirror off.
	DisableEmbeddedRegistry bool
	// EnablePprof serves Go's profiles of the whole process on
	// PprofAddress (loopback by default).
	EnablePprof  bool
	PprofAddress string
	// Verbosity and VModule are the log verbosity of the whole process:
	// the components share one logger (klog), so a v or vmodule given to
	// one of them applies to all.
	Verbosity int
	VModule   string
}

// Logging is the logging configuration every component of the process
// computes for itself: the upstream defaults with the node's v and vmodule.
// Applied once before any component starts, it makes their own applies
// no-ops (component-base ignores an unchanged reapply); the first apply
// replaces klog's global logger, which is only safe while nothing logs.
func (n *Node) Logging() (*logsapi.LoggingConfiguration, error) {
	c := logsapi.NewLoggingConfiguration()
	c.Verbosity = logsapi.VerbosityLevel(n.Verbosity)
	if n.VModule != "" {
		if err := logsapi.VModuleConfigurationPflag(&c.VModule).Set(n.VModule); err != nil {
			return nil, fmt.Errorf("--vmodule %q: %v", n.VModule, err)
		}
	}
	return c, nil
}

// ApplyLogging applies Logging to the process's one logger (klog). The
// process calls it once, before any component starts: the first apply
// replaces klog's global logger, which is only safe while nothing logs.
// Later applies of the same configuration, the kubelet's and kube-proxy's,
// are then ignored.
func (n *Node) ApplyLogging() error {
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
	c, err := n.Logging()
	if err != nil {
		return err
	}
	if err := logsapi.ValidateAndApply(c, utilfeature.DefaultFeatureGate); err != nil {
		return fmt.Errorf("logging: %v", err)
	}
	return nil
}

// AddNodeFlags binds the node flags to n.
func AddNodeFlags(fs *pflag.FlagSet, n *Node) {
	fs.StringVar(&n.NodeName, "node-name", "", "node name (default: the hostname)")
	fs.StringArrayVar(&n.NodeLabels, "node-label", nil, "node label key=value, set at registration (repeatable)")
	fs.StringArrayVar(&n.NodeTaints, "node-taint", nil, "node taint key=value:Effect, set at registration (repeatable)")
	fs.StringArrayVar(&n.KubeletArgs, "kubelet-arg", nil, "extra kubelet flag as key=value (repeatable)")
	fs.StringArrayVar(&n.KubeProxyArgs, "kube-proxy-arg", nil, "extra kube-proxy flag as key=value (repeatable)")
	fs.StringVar(&n.ProxyMode, "kube-proxy-mode", "iptables", "kube-proxy mode: iptables or nftables")
	fs.BoolVar(&n.DisableNetworkPolicy, "disable-network-policy", false, "do not enforce NetworkPolicies on this node, and remove the rules an earlier run left")
	fs.BoolVar(&n.DisableEmbeddedRegistry, "disable-embedded-registry", false, "do not serve this node's images to the other nodes, nor pull from them (embedded registry mirror, port 6543)")
	fs.StringVar(&n.RegistriesConfig, "registries-config", registries.DefaultPath, "registry mirrors and credentials (k3s registries.yaml format); re-read while running")
	fs.BoolVar(&n.EnablePprof, "enable-pprof", false, "serve Go's pprof profiles of the distro process (heap, CPU, goroutines) on --pprof-address, and containerd's on a unix socket in its state folder")
	fs.StringVar(&n.PprofAddress, "pprof-address", "127.0.0.1:6060", "address of the pprof endpoint (with --enable-pprof)")
	fs.IntVarP(&n.Verbosity, "v", "v", 0, "log verbosity of every component (they share one logger; a v in --kubelet-arg and the like sets it too)")
	fs.StringVar(&n.VModule, "vmodule", "", "per-file log verbosity of every component, pattern=N,... (klog's --vmodule)")
	fs.StringVar(&n.ResolvConf, "resolv-conf", "", "resolver file pods with dnsPolicy Default (CoreDNS among them) inherit (default: /etc/resolv.conf unless it names a loopback nameserver)")
}

// Validate checks the node settings and defaults the node name.
func (n *Node) Validate() error {
	if n.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--node-name not given and the hostname is unknown: %v", err)
		}
		n.NodeName = strings.ToLower(h)
	}
	if errs := validation.IsDNS1123Subdomain(n.NodeName); len(errs) > 0 {
		return fmt.Errorf("--node-name %q: %s", n.NodeName, errs[0])
	}
	if n.ResolvConf != "" {
		if st, err := os.Stat(n.ResolvConf); err != nil || st.IsDir() {
			return fmt.Errorf("--resolv-conf %q: not a readable file", n.ResolvConf)
		}
		abs, err := filepath.Abs(n.ResolvConf)
		if err != nil {
			return fmt.Errorf("--resolv-conf %q: %v", n.ResolvConf, err)
		}
		n.ResolvConf = abs
	}
	if n.RegistriesConfig == "" {
		n.RegistriesConfig = registries.DefaultPath
	}
	if _, err := registries.Load(n.RegistriesConfig, n.RegistriesConfig != registries.DefaultPath); err != nil {
		return fmt.Errorf("--registries-config: %w", err)
	}
	if n.EnablePprof {
		if _, port, err := net.SplitHostPort(n.PprofAddress); err != nil || port == "" {
			return fmt.Errorf("--pprof-address %q: expected host:port", n.PprofAddress)
		}
	}
	if n.ProxyMode != "iptables" && n.ProxyMode != "nftables" {
		return fmt.Errorf("--kube-proxy-mode %q: must be iptables or nftables", n.ProxyMode)
	}
	for _, l := range n.NodeLabels {
		k, _, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("--node-label %q: expected key=value", l)
		}
	}
	for _, t := range n.NodeTaints {
		if _, effect, ok := strings.Cut(t, ":"); !ok || (effect != "NoSchedule" && effect != "PreferNoSchedule" && effect != "NoExecute") {
			return fmt.Errorf("--node-taint %q: expected key=value:NoSchedule|PreferNoSchedule|NoExecute", t)
		}
	}
	for name, args := range map[string][]string{"--kubelet-arg": n.KubeletArgs, "--kube-proxy-arg": n.KubeProxyArgs} {
		if _, err := ParseArgs(name, args); err != nil {
			return err
		}
	}
	if n.Verbosity < 0 {
		return fmt.Errorf("-v %d: must be 0 or more", n.Verbosity)
	}
	if n.VModule != "" {
		if err := validVModule(n.VModule); err != nil {
			return fmt.Errorf("--vmodule %q: %v", n.VModule, err)
		}
	}
	return n.shareLogging(nil)
}

// shareLogging makes the log verbosity one setting of the process: the
// components run in one process and share klog, and a component that
// applies a verbosity different from the one already applied stops the
// process. A v or vmodule in the node's or the given pass-through args is
// taken out of them and raises Verbosity (the highest wins) or sets VModule
// (two different ones are an error); then every component gets the same
// v and vmodule. Running it again changes nothing.
func (n *Node) shareLogging(more map[string]*[]string) error {
	lists := map[string]*[]string{"--kubelet-arg": &n.KubeletArgs, "--kube-proxy-arg": &n.KubeProxyArgs}
	for k, v := range more {
		lists[k] = v
	}
	names := make([]string, 0, len(lists))
	for name := range lists {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		list := lists[name]
		var kept []string
		for _, a := range *list {
			k, val, _ := strings.Cut(a, "=")
			switch strings.TrimLeft(k, "-") {
			case "v":
				v, err := strconv.Atoi(val)
				if err != nil || v < 0 {
					return fmt.Errorf("%s %q: v must be a number, 0 or more", name, a)
				}
				n.Verbosity = max(n.Verbosity, v)
			case "vmodule":
				if err := validVModule(val); err != nil {
					return fmt.Errorf("%s %q: %v", name, a, err)
				}
				if n.VModule != "" && n.VModule != val {
					return fmt.Errorf("%s %q: another vmodule, %q, is set too; the components share one logger: give one, e.g. with --vmodule", name, a, n.VModule)
				}
				n.VModule = val
			default:
				kept = append(kept, a)
			}
		}
		*list = kept
	}
	for _, name := range names {
		list := lists[name]
		if n.Verbosity > 0 {
			*list = append(*list, "v="+strconv.Itoa(n.Verbosity))
		}
		if n.VModule != "" {
			*list = append(*list, "vmodule="+n.VModule)
		}
	}
	return nil
}

// Agent is the configuration of `distro agent`.
type Agent struct {
	ConfigFile string
	Server     string
	Token      string
	TokenFile  string
	DataDir    string
	NodeIP     string
	LBPort     int
	Node
}

// AddAgentFlags binds the agent flags to a.
func AddAgentFlags(fs *pflag.FlagSet, a *Agent) {
	fs.StringVarP(&a.ConfigFile, "config", "c", DefaultConfigFile, "config file (YAML, same keys as the long flags)")
	fs.StringVarP(&a.Server, "server", "s", "", "server to join, https://<server>:6443")
	fs.StringVarP(&a.Token, "token", "t", "", "join token (K10… from the server's <data-dir>/server/token; or $DISTRO_TOKEN)")
	fs.StringVar(&a.TokenFile, "token-file", "", "file holding the join token")
	fs.StringVarP(&a.DataDir, "data-dir", "d", "/var/lib/distro", "folder that holds state")
	fs.StringVar(&a.NodeIP, "node-ip", "", "IP address of this node (default: address of the default route's interface)")
	fs.IntVar(&a.LBPort, "lb-server-port", 6444, "port on 127.0.0.1 of the load balancer in front of the servers")
	AddNodeFlags(fs, &a.Node)
}

// Validate checks the agent settings and fills in defaults.
func (a *Agent) Validate() error {
	if a.Server == "" {
		return errors.New("--server is required (https://<server>:6443)")
	}
	u, err := url.Parse(a.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("--server %q: expected https://<host>:<port>", a.Server)
	}
	a.Server = strings.TrimSuffix(a.Server, "/")
	if a.Token != "" && a.TokenFile != "" {
		return errors.New("give --token or --token-file, not both")
	}
	if a.TokenFile != "" {
		data, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %v", err)
		}
		a.Token = strings.TrimSpace(string(data))
	}
	if a.Token == "" {
		a.Token = strings.TrimSpace(os.Getenv("DISTRO_TOKEN")) // keeps the secret off the command line
	}
	if a.Token == "" {
		return errors.New("--token, --token-file or $DISTRO_TOKEN is required")
	}
	if a.DataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	if err := validPort("--lb-server-port", a.LBPort); err != nil {
		return err
	}
	if a.DataDir, err = filepath.Abs(a.DataDir); err != nil {
		return err
	}
	if a.NodeIP != "" && net.ParseIP(a.NodeIP) == nil {
		return fmt.Errorf("--node-ip %q is not an IP address", a.NodeIP)
	}
	if err := a.Node.Validate(); err != nil {
		return err
	}
	if a.NodeIP == "" {
		ip, err := DefaultIP()
		if err != nil {
			return fmt.Errorf("--node-ip not given and none found: %v", err)
		}
		a.NodeIP = ip.String()
	}
	return nil
}

// validVModule checks klog's vmodule syntax (pattern=N, comma-separated)
// with the parser the components apply it with.
func validVModule(s string) error {
	var c logsapi.VModuleConfiguration
	return logsapi.VModuleConfigurationPflag(&c).Set(s)
}
