// Package cni runs the node's pod network: flannel (VXLAN between nodes,
// in-process) and, once the node has its pod CIDR, a CNI configuration with
// a bridge and host-local addresses from that CIDR, portmap (hostPort) and
// bandwidth. Traffic from pods to outside the cluster is masqueraded; pod to
// pod traffic is not.
package cni

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"distro/pkg/datadir"
	"distro/pkg/fsutil"
	"distro/pkg/kubeclient"
)

// Bridge is the name of the node's pod bridge.
const Bridge = "cni0"

// Network is the pod network component.
type Network struct {
	Paths       datadir.Agent
	NodeName    string
	NodeIP      string
	Kubeconfig  string
	ClusterCIDR string
	// ServiceCIDR is rejected where kube-proxy did not translate it: see
	// ensureIptables.
	ServiceCIDR string
	// Before, when set, is waited on before the CNI config is written: the
	// node turns Ready only with its config, so pods are not scheduled to
	// it before their carried images are imported.
	Before <-chan struct{}
}

func (n *Network) Name() string { return "pod network" }

// Conflist renders the CNI configuration for a pod CIDR.
func Conflist(podCIDR string, mtu int) ([]byte, error) {
	return json.MarshalIndent(map[string]interface{}{
		"cniVersion": "1.0.0",
		"name":       "distro",
		"plugins": []interface{}{
			map[string]interface{}{
				"type": "bridge", "bridge": Bridge, "isGateway": true, "ipMasq": false,
				"hairpinMode": true, "forceAddress": true, "mtu": mtu,
				"ipam": map[string]interface{}{
					"type":   "host-local",
					"ranges": [][]map[string]string{{{"subnet": podCIDR}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			// The backend is named: without it, portmap runs `iptables`
			// twice on every pod's network setup and teardown to choose one,
			// even for pods without a hostPort (most). distro needs iptables
			// anyway (ensureIptables), so that choice is always iptables.
			map[string]interface{}{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true, "backend": "iptables"},
			map[string]interface{}{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}},
		},
	}, "", "  ")
}

// Run waits for the node's pod CIDR (the kubelet registers the node; the
// controller-manager allocates), writes the CNI config and the masquerade
// rule. It is ready as soon as it started waiting, since the kubelet must
// run for the node to exist.
func (n *Network) Run(ctx context.Context, ready func()) error {
	ready()
	if err := n.waitPodCIDR(ctx); err != nil {
		return nil // ctx ended
	}
	klog.Infof("pod network: starting flannel (vxlan) on %s", n.NodeIP)
	o, err := startFlannel(ctx, n.Paths.Etc, n.Kubeconfig, n.NodeName, n.NodeIP, n.ClusterCIDR)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	podCIDR := o.net.Lease().Subnet.String()
	if n.Before != nil {
		select {
		case <-n.Before:
		default:
			klog.Info("pod network: waiting for the image import before writing the CNI config")
			select {
			case <-n.Before:
			case <-ctx.Done():
				return nil
			}
		}
	}
	conf, err := Conflist(podCIDR, o.net.MTU())
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(n.Paths.CNIConf, "10-distro.conflist"), conf, 0o644); err != nil {
		return err
	}
	if err := ensureIptables(n.ClusterCIDR, n.ServiceCIDR); err != nil {
		return err
	}
	if err := ensureSysctls(); err != nil {
		return err
	}
	klog.Infof("pod network: node %s uses pod CIDR %s on bridge %s, MTU %d", n.NodeName, podCIDR, Bridge, o.net.MTU())
	<-ctx.Done()
	o.wg.Wait()
	return nil
}

// waitPodCIDR waits until the kubelet registered the node and the
// controller-manager gave it a pod CIDR (flannel's lease is that CIDR).
func (n *Network) waitPodCIDR(ctx context.Context) error {
	client, err := kubeclient.FromKubeconfig(n.Kubeconfig)
	if err != nil {
		return err
	}
	logged := time.Time{}
	return kubeclient.PollStart(ctx, func(ctx context.Context) (bool, error) {
		node, err := client.CoreV1().Nodes().Get(ctx, n.NodeName, metav1.GetOptions{})
		if err == nil && node.Spec.PodCIDR != "" {
			return true, nil
		}
		if time.Since(logged) > 5*time.Second {
			klog.Infof("pod network: waiting for node %s to be registered and given a pod CIDR", n.NodeName)
			logged = time.Now()
		}
		return false, nil
	})
}

// ensureIptables NATs traffic from pods to destinations outside the
// cluster network (pod-to-pod traffic keeps its source address) and accepts
// forwarded pod traffic even where the FORWARD policy is DROP (as Docker
// sets it).
//
// It also rejects what is still addressed to the service network once
// kube-proxy's DNAT has run: an address and port no Service serves (a
// removed port, TCP to a UDP-only Service, an unallocated ClusterIP).
// kube-proxy's iptables mode has no rule for that, so such a packet would
// otherwise follow the node's default route out of the cluster; its
// nftables mode rejects it the same way. The filter table sees packets
// after the nat table's DNAT, so every ClusterIP that kube-proxy serves has
// already been rewritten to an endpoint here.
func ensureIptables(clusterCIDR, serviceCIDR string) error {
	comment := []string{"-m", "comment", "--comment", "distro: pod network"}
	type rule struct {
		insert bool // at the top of the chain: before the ACCEPTs below
		args   []string
	}
	rules := []rule{
		{false, append([]string{"-t", "nat", "POSTROUTING", "-s", clusterCIDR, "!", "-d", clusterCIDR}, append(comment, "-j", "MASQUERADE")...)},
		{false, append([]string{"-t", "filter", "FORWARD", "-s", clusterCIDR}, append(comment, "-j", "ACCEPT")...)},
		{false, append([]string{"-t", "filter", "FORWARD", "-d", clusterCIDR}, append(comment, "-j", "ACCEPT")...)},
	}
	if serviceCIDR != "" {
		unserved := []string{"-d", serviceCIDR, "-m", "comment", "--comment", "distro: unserved service address", "-j", "REJECT"}
		rules = append(rules,
			rule{true, append([]string{"-t", "filter", "FORWARD"}, unserved...)},
			rule{true, append([]string{"-t", "filter", "OUTPUT"}, unserved...)})
	}
	for _, r := range rules {
		table, chain, rest := r.args[:2], r.args[2], r.args[3:]
		check := append(append(append([]string{}, table...), "-C", chain), rest...)
		if exec.Command("iptables", check...).Run() == nil {
			continue
		}
		add := append(append([]string{}, table...), "-A", chain)
		if r.insert {
			add = append(append([]string{}, table...), "-I", chain, "1")
		}
		if out, err := exec.Command("iptables", append(add, rest...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %v: %v: %s", r.args, err, out)
		}
	}
	return nil
}

// sysctls pod networking needs: forwarding, and bridged traffic passing
// through iptables so replies from a Service's pod on the same bridge are
// translated back (kube-proxy's DNAT).
var sysctls = map[string]string{
	"net/ipv4/ip_forward":                 "1",
	"net/bridge/bridge-nf-call-iptables":  "1",
	"net/bridge/bridge-nf-call-ip6tables": "1",
}

func ensureSysctls() error {
	for k, v := range sysctls {
		p := "/proc/sys/" + k
		if cur, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(cur)) == v {
			continue
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			return fmt.Errorf("set sysctl %s=%s: %w", strings.ReplaceAll(k, "/", "."), v, err)
		}
	}
	return nil
}
