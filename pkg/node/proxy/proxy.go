// Package proxy runs the upstream kube-proxy in the distro process.
package proxy

import (
	"context"
	"fmt"

	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"

	"distro/pkg/config"
)

// Proxy is the kube-proxy component.
type Proxy struct {
	NodeName, ClusterCIDR string
	// Mode is iptables (default) or nftables.
	Mode       string
	Kubeconfig string
	Extra      []config.Arg
}

func (p *Proxy) Name() string { return "kube-proxy" }

// Args returns kube-proxy's flags, with --kube-proxy-arg overrides.
func (p *Proxy) Args() []string {
	mode := p.Mode
	if mode == "" {
		mode = "iptables"
	}
	m := map[string]string{
		"kubeconfig":             p.Kubeconfig,
		"hostname-override":      p.NodeName,
		"cluster-cidr":           p.ClusterCIDR,
		"proxy-mode":             mode,
		"healthz-bind-address":   "127.0.0.1:10256",
		"metrics-bind-address":   "127.0.0.1:10249",
		"conntrack-max-per-core": "0",
	}
	for _, a := range p.Extra {
		m[a.Key] = a.Value
	}
	return config.FlagList(m)
}

// Run starts kube-proxy; like the kubelet it ends with the process.
func (p *Proxy) Run(ctx context.Context, ready func()) error {
	cmd := proxyapp.NewProxyCommand()
	cmd.SetArgs(p.Args())
	cmd.SilenceUsage = true
	errCh := make(chan error, 1)
	go func() { errCh <- cmd.ExecuteContext(ctx) }()
	ready()
	select {
	case err := <-errCh:
		if err == nil {
			err = fmt.Errorf("kube-proxy exited")
		}
		return err
	case <-ctx.Done():
		return nil
	}
}
