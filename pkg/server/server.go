// Package server wires `distro server`: the steps below read in boot order.
package server

import (
	"context"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"distro/pkg/addons"
	"distro/pkg/component"
	"distro/pkg/config"
	"distro/pkg/controlplane"
	"distro/pkg/datadir"
	"distro/pkg/etcd"
	"distro/pkg/join"
	"distro/pkg/leader"
	"distro/pkg/pki"
	"distro/pkg/profiling"
	"distro/pkg/token"
)

// Run runs the control plane until ctx ends. cfg must be validated.
func Run(ctx context.Context, cfg *config.Server) error {
	paths := datadir.NewServer(cfg.DataDir)
	hostname, _ := os.Hostname()
	hostname = strings.ToLower(hostname)
	// 1. Every component's settings, checked before anything is written.
	args := func(flag string, a []string) []config.Arg {
		out, _ := config.ParseArgs(flag, a) // checked by Validate
		return out
	}
	etcdArgs := args("--etcd-arg", cfg.EtcdArgs)
	ec := etcd.ForServer(paths, hostname, cfg.EtcdClientPort, cfg.EtcdPeerPort)
	ec.ExtraArgs = etcdArgs
	if _, err := ec.Build(); err != nil {
		return err
	}
	apiserver := controlplane.NewAPIServer(controlplane.APIServerInput{
		BindAddress: cfg.BindAddress, AdvertiseAddress: cfg.AdvertiseAddress, Port: cfg.HTTPSListenPort,
		ServiceCIDR: cfg.ServiceCIDR, ClusterDomain: cfg.ClusterDomain, EtcdURL: ec.ClientURL(),
		File: paths.File, Extra: args("--kube-apiserver-arg", cfg.KubeAPIServerArgs),
		EncryptionConfig: encryptionConfig(cfg, paths),
		Audit:            auditSettings(cfg, paths),
	})
	scheduler := controlplane.NewScheduler(paths.Kubeconfig("scheduler"), paths.SchedulerConfig, paths.File, args("--kube-scheduler-arg", cfg.KubeSchedulerArgs))
	cm := controlplane.NewControllerManager(paths.Kubeconfig("controller"), cfg.ClusterCIDR, cfg.ServiceCIDR, paths.File, args("--kube-controller-manager-arg", cfg.KubeControllerManagerArgs))
	// Bad pass-through flags fail here, before anything starts.
	if _, err := apiserver.Options(); err != nil {
		return err
	}
	if _, err := scheduler.Options(); err != nil {
		return err
	}
	if _, err := cm.Options(); err != nil {
		return err
	}

	if err := preflight(cfg); err != nil {
		return err
	}
	if cfg.ClusterReset {
		return clusterReset(ctx, cfg, ec, paths)
	}
	ha := clusterMode(cfg, paths)
	if ha {
		ec.PeerHost = cfg.NodeIP
	}
	ec.Alone = !ha
	_, statErr := os.Stat(paths.Root)
	firstStart := os.IsNotExist(statErr)
	firstStartDone := false
	start := time.Now()
	wroteKubeconfig := false
	defer func() {
		// A first start that fails leaves nothing behind: the next start
		// begins from scratch instead of from a half-made state.
		if firstStart && !firstStartDone {
			klog.Infof("first start did not complete: removing %s", paths.Root)
			os.RemoveAll(paths.Root)
			if wroteKubeconfig {
				os.Remove(cfg.WriteKubeconfig)
			}
		}
	}()

	// 2. Certificates, keys, token and kubeconfigs.
	serviceIP, err := firstIP(cfg.ServiceCIDR)
	if err != nil {
		return err
	}
	in := pki.ServerInput{
		Hostname:      hostname,
		NodeIPs:       uniqueIPs(cfg.NodeIP, cfg.AdvertiseAddress, cfg.BindAddress),
		ServiceIP:     serviceIP,
		ClusterDomain: cfg.ClusterDomain,
		TLSSANs:       cfg.TLSSANs,
	}
	// A server joining a cluster: admitted by it, with its shared files.
	if in.Shared, err = joinCluster(ctx, cfg, paths, &ec); err != nil {
		return err
	}
	klog.Infof("checking certificates in %s", paths.TLS)
	certs, err := pki.EnsureServer(paths.TLS, in)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if ha {
		if err := markCluster(paths); err != nil {
			return err
		}
	}
	caBundle := pki.Bundle(certs.ServerCA)
	ec.ClusterID = pki.CAHash(caBundle)
	tok, err := token.Ensure(paths.Token, pki.CAHash(caBundle), cfg.Token)
	if err != nil {
		return err
	}
	if err := ensureEncryption(cfg, paths); err != nil {
		return err
	}
	if err := ensureAudit(cfg, paths); err != nil {
		return err
	}
	localURL := controlplane.LocalURL(cfg.BindAddress, cfg.HTTPSListenPort)
	if err := writeKubeconfigs(paths, localURL); err != nil {
		return err
	}
	if cfg.WriteKubeconfig != "" {
		if err := writeUserKubeconfig(cfg, paths, localURL); err != nil {
			return err
		}
		wroteKubeconfig = true
	}
	adminConfig := controlplane.LoopbackConfig(cfg.BindAddress, cfg.HTTPSListenPort, caBundle, paths.File("client-admin.crt"), paths.File("client-admin.key"))
	adminClient, err := kubernetes.NewForConfig(adminConfig)
	if err != nil {
		return err
	}
	apiserver.Client = adminClient
	joinServer := &join.Server{
		Certs: certs, Secret: tok.Secret, Client: adminClient,
		ClusterCIDR: cfg.ClusterCIDR, ServiceCIDR: cfg.ServiceCIDR, ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain,
		TLSDir: paths.TLS, Settings: sharedSettings(cfg),
	}
	if ha {
		joinServer.AddMember = ec.AddLearner
	}
	apiserver.Wrap = joinServer.Wrap
	// The packaged add-ons, rendered into the manifests folder (or removed
	// from it when disabled).
	err = addons.Stage(paths.Manifests, addons.Values{
		ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain, StorageDir: datadir.Storage(cfg.DataDir),
	}, cfg.Disable)
	if err != nil {
		return fmt.Errorf("packaged add-ons: %w", err)
	}
	deployer := &addons.Deployer{Dir: paths.Manifests, Config: adminConfig}

	// 3. Components, in dependency order.

	rbac := component.Func{N: "bootstrap RBAC", F: func(ctx context.Context, ready func()) error {
		err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			if err := controlplane.EnsureRBAC(ctx, adminClient); err != nil {
				klog.Infof("waiting to write bootstrap RBAC: %v", err)
				return false, nil
			}
			// The Leases of the elected components live in kube-system,
			// which the apiserver creates shortly after it serves.
			_, err := adminClient.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
			return err == nil, nil
		})
		if err != nil {
			return nil // ctx ended
		}
		ready()
		<-ctx.Done()
		return nil
	}}

	controlPlaneReady := component.Func{N: "control plane", F: func(ctx context.Context, ready func()) error {
		firstStartDone = true
		klog.Infof("control plane ready in %.2f s (admin kubeconfig: %s)", time.Since(start).Seconds(), cfg.WriteKubeconfig)
		ready()
		<-ctx.Done()
		return nil
	}}
	// The scheduler, the controller-manager and distro's own controllers
	// run on one server at a time, the holder of their Lease.
	controllers, err := distroControllers(cfg, paths, ec, ha, deployer, adminClient)
	if err != nil {
		return err
	}
	elected := func(lease string, c component.Component) component.Component {
		return &leader.Elected{Lease: lease, Identity: cfg.NodeName, Client: adminClient, Inner: c}
	}
	// A single server runs all three unelected (it admits no other server,
	// so nothing could lead but it, and renewing a Lease every 2 s would be
	// its largest write at idle), the scheduler and the controller-manager
	// before its node: the controller-manager's volume plugins and the
	// kubelet's share the CSI plugin's process-wide state, and the kubelet's
	// Init must come last (a restart of the controller-manager after a lost
	// Lease overwrites it; see README).
	var sched, ctrl, own component.Component = scheduler, cm, controllers
	if ha {
		sched, ctrl = elected("kube-scheduler", scheduler), elected("kube-controller-manager", cm)
		own = elected("distro-controllers", controllers)
	}
	comps := []component.Component{ec, bootstrapStore(ec, paths, tok.Secret), apiserver, rbac,
		sched, ctrl, controlPlaneReady, own}
	if !cfg.DisableAgent {
		runtime, nodeComps, err := nodeComponents(cfg, certs, localURL, start, adminClient)
		if err != nil {
			return err
		}
		// containerd and the image import (seconds, for the add-ons'
		// images) run alongside the control plane's start; the node's
		// other components wait for them where they used to start them.
		early, await := component.Early(runtime)
		comps = append([]component.Component{early}, comps...)
		comps = append(comps, await)
		comps = append(comps, nodeComps...)
		if ha {
			comps = append(comps, &etcd.NodeMarker{Client: adminClient, Node: cfg.NodeName, Member: ec.Member})
		}
	}
	comps = append(comps, certRenewer(cfg, paths, in, localURL, adminClient))
	return component.Starter{}.Run(ctx, comps, profiling.AfterBoot)
}

// firstIP returns the first usable address of a CIDR (the kubernetes
// Service's ClusterIP).
func firstIP(cidr string) (net.IP, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, err
	}
	i := new(big.Int).SetBytes(n.IP)
	i.Add(i, big.NewInt(1))
	b := i.Bytes()
	ip := make(net.IP, len(n.IP))
	copy(ip[len(ip)-len(b):], b)
	return ip, nil
}

func uniqueIPs(addrs ...string) []net.IP {
	var out []net.IP
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && !ip.IsUnspecified() {
			out = append(out, ip)
		}
	}
	return out
}
