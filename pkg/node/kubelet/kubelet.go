// Package kubelet runs the upstream kubelet in the distro process.
package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"

	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/fsutil"
	"distro/pkg/kubeclient"
	"distro/pkg/node/containerd"
)

// Kubelet is the kubelet component.
type Kubelet struct {
	Paths                     datadir.Agent
	NodeName, NodeIP          string
	ClusterDNS, ClusterDomain string
	Labels, Taints            []string
	// ResolvConf, when set, is the resolver file pods inherit (--resolv-conf);
	// else resolvConf picks one.
	ResolvConf              string
	Extra                   []config.Arg
	Kubeconfig, ClientCA    string
	ServingCert, ServingKey string
}

func (k *Kubelet) Name() string { return "kubelet" }

// ConfigFile renders the KubeletConfiguration: webhook authentication and
// authorization, client certificates from the client CA, the cgroup driver
// of the host and the node's own cgroup root, cgroup v1 allowed.
func (k *Kubelet) ConfigFile() ([]byte, error) {
	driver := "cgroupfs"
	if containerd.SystemdCgroups() {
		driver = "systemd"
	}
	cfg := map[string]interface{}{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		"authentication": map[string]interface{}{
			"anonymous": map[string]bool{"enabled": false},
			"webhook":   map[string]interface{}{"enabled": true, "cacheTTL": "2m"},
			"x509":      map[string]string{"clientCAFile": k.ClientCA},
		},
		"authorization":            map[string]interface{}{"mode": "Webhook"},
		"clusterDNS":               []string{k.ClusterDNS},
		"clusterDomain":            k.ClusterDomain,
		"cgroupDriver":             driver,
		"failCgroupV1":             false,
		"failSwapOn":               false,
		"tlsCertFile":              k.ServingCert,
		"tlsPrivateKeyFile":        k.ServingKey,
		"containerRuntimeEndpoint": "unix://" + k.Paths.Socket,
		"healthzBindAddress":       "127.0.0.1",
		"readOnlyPort":             0,
		"serializeImagePulls":      false,
		"resolvConf":               k.resolvConf(),
		"evictionHard": map[string]string{
			"memory.available":  "100Mi",
			"nodefs.available":  "5%",
			"imagefs.available": "5%",
		},
		"imageGCHighThresholdPercent": 95,
		"imageGCLowThresholdPercent":  90,
	}
	if root := CgroupRoot(k.NodeName); root != "" {
		cfg["cgroupRoot"] = root
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// Args returns the kubelet's flags, with --kubelet-arg overrides.
func (k *Kubelet) Args(configPath string) []string {
	m := map[string]string{
		"config":            configPath,
		"kubeconfig":        k.Kubeconfig,
		"hostname-override": k.NodeName,
		"node-ip":           k.NodeIP,
	}
	if len(k.Labels) > 0 {
		m["node-labels"] = strings.Join(k.Labels, ",")
	}
	if len(k.Taints) > 0 {
		m["register-with-taints"] = strings.Join(k.Taints, ",")
	}
	for _, a := range k.Extra {
		m[a.Key] = a.Value
	}
	return config.FlagList(m)
}

// Run starts the kubelet. The kubelet has no clean stop: when ctx ends the
// component returns and the kubelet ends with the process.
func (k *Kubelet) Run(ctx context.Context, ready func()) error {
	conf, err := k.ConfigFile()
	if err != nil {
		return err
	}
	if err := ensureCgroupRoot(CgroupRoot(k.NodeName)); err != nil {
		return err
	}
	path := filepath.Join(k.Paths.Etc, "kubelet.yaml")
	if err := fsutil.WriteFileAtomic(path, conf, 0o600); err != nil {
		return err
	}
	cmd := kubeletapp.NewKubeletCommand(context.WithoutCancel(ctx))
	cmd.SetArgs(k.Args(path))
	cmd.SilenceUsage = true
	errCh := make(chan error, 1)
	go func() { errCh <- cmd.ExecuteContext(context.WithoutCancel(ctx)) }()
	go k.waitRegistered(ctx, ready)
	select {
	case err := <-errCh:
		if err != nil {
			return err
		}
		// The upstream command ends by itself on SIGTERM or SIGINT (its own
		// signal context), the same signal that stops distro: wait for
		// distro's stop instead of reporting a failure that turns a clean
		// shutdown into exit status 1.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(30 * time.Second):
			return fmt.Errorf("kubelet exited")
		}
	case <-ctx.Done():
		return nil
	}
}

// waitRegistered signals ready once the kubelet has registered its Node.
func (k *Kubelet) waitRegistered(ctx context.Context, ready func()) {
	client, err := kubeclient.FromKubeconfig(k.Kubeconfig)
	if err != nil {
		klog.Errorf("kubelet: cannot watch for its Node: %v", err)
		return
	}
	_ = kubeclient.PollStart(ctx, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Nodes().Get(ctx, k.NodeName, metav1.GetOptions{})
		return err == nil, nil
	})
	if ctx.Err() == nil {
		ready()
	}
}

// resolvConf is --resolv-conf when given, else the file resolvConf picks.
func (k *Kubelet) resolvConf() string {
	if k.ResolvConf != "" {
		return k.ResolvConf
	}
	return resolvConf(k.Paths.Etc)
}

// resolvConf picks the resolver file pods with dnsPolicy Default inherit,
// CoreDNS among them: it forwards names outside the cluster to those
// nameservers. A loopback nameserver (systemd-resolved's 127.0.0.53,
// Docker's 127.0.0.11, a local dnsmasq) would be CoreDNS itself inside its
// pod: a loop, on which CoreDNS exits. The host's file is used when it has
// none, else systemd-resolved's upstream file, else a copy written to
// etcDir without them (Docker's upstream servers where it names them; as a
// last resort 8.8.8.8, which on an air-gapped host only makes outside names
// fail; --resolv-conf FILE chooses another).
func resolvConf(etcDir string) string {
	host, _ := os.ReadFile("/etc/resolv.conf")
	out, loop, servers := FilterResolvConf(host)
	if !loop && servers > 0 {
		return "/etc/resolv.conf"
	}
	const systemd = "/run/systemd/resolve/resolv.conf"
	if data, err := os.ReadFile(systemd); err == nil {
		if _, loop, servers := FilterResolvConf(data); !loop && servers > 0 {
			return systemd
		}
	}
	if servers == 0 {
		out = append(out, "nameserver 8.8.8.8\n"...)
		klog.Warning("/etc/resolv.conf has no nameserver CoreDNS can forward to (only loopback ones, which would be CoreDNS itself); pods use 8.8.8.8 for names outside the cluster (--resolv-conf FILE chooses another)")
	}
	path := filepath.Join(etcDir, "resolv.conf")
	if err := fsutil.WriteFileAtomic(path, out, 0o644); err != nil {
		klog.Warningf("write %s: %v; pods inherit /etc/resolv.conf", path, err)
		return "/etc/resolv.conf"
	}
	klog.Infof("pods inherit %s: /etc/resolv.conf names loopback nameservers, which CoreDNS would forward to itself", path)
	return path
}

// FilterResolvConf drops loopback nameservers from a resolv.conf, keeping
// search and options; where Docker's embedded DNS is the nameserver, the
// upstream servers Docker lists ("# ExtServers: [...]") take its place. It
// reports whether a loopback nameserver was dropped and how many remain.
func FilterResolvConf(data []byte) (out []byte, loopback bool, servers int) {
	var b strings.Builder
	var ext []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "#" && f[1] == "ExtServers:" {
			for _, tok := range strings.FieldsFunc(strings.Join(f[2:], " "), func(r rune) bool { return strings.ContainsRune("[](), ", r) }) {
				if ip := net.ParseIP(tok); ip != nil && !ip.IsLoopback() {
					ext = append(ext, tok)
				}
			}
			continue
		}
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip := net.ParseIP(f[1]); ip != nil && ip.IsLoopback() {
				loopback = true
				continue
			}
			servers++
		}
		if len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			b.WriteString(strings.TrimSpace(line) + "\n")
		}
	}
	if loopback && servers == 0 {
		for _, ip := range ext {
			b.WriteString("nameserver " + ip + "\n")
			servers++
		}
	}
	return []byte(b.String()), loopback, servers
}
