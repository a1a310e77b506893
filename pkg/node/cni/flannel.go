package cni

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/flannel-io/flannel/pkg/backend"
	_ "github.com/flannel-io/flannel/pkg/backend/vxlan" // registers the vxlan backend
	"github.com/flannel-io/flannel/pkg/ipmatch"
	"github.com/flannel-io/flannel/pkg/subnet/kube"

	"distro/pkg/fsutil"
)

// overlay is a running flannel VXLAN network.
type overlay struct {
	net backend.Network
	wg  sync.WaitGroup
}

// startFlannel runs flannel as a library: the kube subnet manager (each
// node's lease is its pod CIDR from the controller-manager, published in node
// annotations) and the VXLAN backend on the interface holding nodeIP. It
// blocks until the node has its lease.
func startFlannel(ctx context.Context, etc, kubeconfig, nodeName, nodeIP, clusterCIDR string) (*overlay, error) {
	conf, _ := json.Marshal(map[string]interface{}{
		"Network":    clusterCIDR,
		"EnableIPv4": true,
		"Backend":    map[string]string{"Type": "vxlan"},
	})
	confPath := filepath.Join(etc, "flannel", "net-conf.json")
	if err := fsutil.WriteFileAtomic(confPath, conf, 0o644); err != nil {
		return nil, err
	}
	// The kube subnet manager finds its node through NODE_NAME.
	os.Setenv("NODE_NAME", nodeName)
	sm, err := kube.NewSubnetManager(ctx, "", kubeconfig, "flannel.alpha.coreos.com", confPath, false)
	if err != nil {
		return nil, fmt.Errorf("flannel subnet manager: %w", err)
	}
	cfg, err := sm.GetNetworkConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("flannel network config: %w", err)
	}
	stack, err := ipmatch.GetIPFamily(cfg.EnableIPv4, cfg.EnableIPv6)
	if err != nil {
		return nil, err
	}
	iface, err := ipmatch.LookupExtIface(nodeIP, "", "", stack, ipmatch.PublicIPOpts{})
	if err != nil {
		return nil, fmt.Errorf("flannel: no interface with node IP %s: %w", nodeIP, err)
	}
	be, err := backend.NewManager(ctx, sm, iface).GetBackend(cfg.BackendType)
	if err != nil {
		return nil, fmt.Errorf("flannel backend %s: %w", cfg.BackendType, err)
	}
	o := &overlay{}
	o.net, err = be.RegisterNetwork(ctx, &o.wg, cfg)
	if err != nil {
		return nil, fmt.Errorf("flannel: register network: %w", err)
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.net.Run(ctx)
	}()
	return o, nil
}
