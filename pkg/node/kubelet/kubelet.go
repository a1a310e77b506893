// Package kubelet runs the upstream kubelet in the distro process.
package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
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
	Extra                     []config.Arg
	Kubeconfig, ClientCA      string
	ServingCert, ServingKey   string
}

func (k *Kubelet) Name() string { return "kubelet" }

// ConfigFile renders the KubeletConfiguration: webhook authentication and
// authorization, client certificates from the client CA, the cgroup driver
// of the host, cgroup v1 allowed.
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
		"resolvConf":               resolvConf(),
		"evictionHard": map[string]string{
			"memory.available":  "100Mi",
			"nodefs.available":  "5%",
			"imagefs.available": "5%",
		},
		"imageGCHighThresholdPercent": 95,
		"imageGCLowThresholdPercent":  90,
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
		if err == nil {
			err = fmt.Errorf("kubelet exited")
		}
		return err
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
	_ = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Nodes().Get(ctx, k.NodeName, metav1.GetOptions{})
		return err == nil, nil
	})
	if ctx.Err() == nil {
		ready()
	}
}

// resolvConf picks the host's resolver file pods should inherit: the one
// behind systemd-resolved's stub when /etc/resolv.conf points at loopback.
func resolvConf() string {
	data, err := os.ReadFile("/etc/resolv.conf")
	if err == nil && (strings.Contains(string(data), "nameserver 127.") || strings.Contains(string(data), "nameserver ::1")) {
		if _, err := os.Stat("/run/systemd/resolve/resolv.conf"); err == nil {
			return "/run/systemd/resolve/resolv.conf"
		}
		klog.Warning("/etc/resolv.conf uses a loopback nameserver; pods may not resolve external names")
	}
	return "/etc/resolv.conf"
}
