package addons

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"distro/pkg/kubeclient"
)

// NodeHosts keeps the NodeHosts key of the CoreDNS ConfigMap equal to the
// nodes' addresses and names, one "IP name" line each, so pods resolve
// node names (CoreDNS's hosts plugin reads the file). It owns only that key
// (its own server-side apply field manager), so re-applying coredns.yaml
// leaves it alone; while the ConfigMap does not exist (coredns disabled) it
// writes nothing.
type NodeHosts struct {
	Client kubernetes.Interface
}

const (
	nodeHostsManager = "distro-nodehosts"
	nodeHostsKey     = "NodeHosts"
	corednsConfigMap = "coredns"
)

func (n *NodeHosts) Name() string { return "coredns node hosts" }

func (n *NodeHosts) Run(ctx context.Context, ready func()) error {
	ready()
	nodes := kubeclient.WatchNodes(ctx, n.Client, nil)
	defer nodes.Stop()
	if !nodes.Synced(ctx) {
		return nil
	}
	// Also retried every 10 s: the ConfigMap appears after the add-on is
	// applied, and a failed write is tried again.
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	written := ""
	for {
		text := HostsFile(nodes.List())
		if text != written {
			if err := n.write(ctx, text); err != nil {
				klog.V(2).Infof("coredns NodeHosts: %v", err)
			} else {
				written = text
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-nodes.Changed:
		case <-tick.C:
		}
	}
}

func (n *NodeHosts) write(ctx context.Context, text string) error {
	cms := n.Client.CoreV1().ConfigMaps(metav1.NamespaceSystem)
	if _, err := cms.Get(ctx, corednsConfigMap, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no ConfigMap %s yet", corednsConfigMap)
		}
		return err
	}
	ac := corev1ac.ConfigMap(corednsConfigMap, metav1.NamespaceSystem).WithData(map[string]string{nodeHostsKey: text})
	_, err := cms.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: nodeHostsManager, Force: true})
	return err
}

// HostsFile renders the nodes' InternalIPs (ExternalIP where a node has
// none) and names as a hosts file, sorted by name.
func HostsFile(nodes []*corev1.Node) string {
	var lines []string
	for _, node := range nodes {
		ip := ""
		for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
			for _, a := range node.Status.Addresses {
				if a.Type == t && ip == "" {
					ip = a.Address
				}
			}
		}
		if ip != "" {
			lines = append(lines, ip+" "+node.Name)
		}
	}
	sort.Slice(lines, func(i, j int) bool {
		return strings.Fields(lines[i])[1] < strings.Fields(lines[j])[1]
	})
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}
