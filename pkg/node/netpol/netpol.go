// Package netpol enforces NetworkPolicies on the node with nftables: it
// watches pods, namespaces and NetworkPolicies and keeps one table, inet
// distro-netpol, in step with them. The rules live in the kernel, so they
// stay in force while distro is stopped; a policy change applies to new
// connections (established ones continue).
package netpol

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"sigs.k8s.io/knftables"

	"distro/pkg/component"
	"distro/pkg/kubeclient"
)

const (
	// coalesce is how long a change waits for more changes before the
	// table is rewritten: a burst of pod updates costs one sync.
	coalesce = 100 * time.Millisecond
	// resync rewrites the table even without changes, restoring rules
	// someone removed by hand.
	resync = time.Minute
	// retry is the wait after a failed sync, and between looks for a
	// usable nft.
	retry = 2 * time.Second
)

// Controller is the NetworkPolicy component of a node.
type Controller struct {
	NodeName string
	// Kubeconfig is an identity allowed to list and watch pods,
	// namespaces and networkpolicies cluster-wide.
	Kubeconfig string
}

func (c *Controller) Name() string { return "network policy" }

// Run watches the API and rewrites the table on every change. It is ready
// at once: until the first sync the table of an earlier run (if any) stays
// in force.
func (c *Controller) Run(ctx context.Context, ready func()) error {
	client, err := kubeclient.FromKubeconfig(c.Kubeconfig)
	if err != nil {
		return err
	}
	ready()
	nft := waitNftables(ctx)
	if nft == nil {
		return nil // ctx ended
	}
	klog.Infof("network policy: enforcing NetworkPolicies on node %s in nftables table inet %s", c.NodeName, Table)

	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(stripManagedFields))
	pods := factory.Core().V1().Pods()
	namespaces := factory.Core().V1().Namespaces()
	policies := factory.Networking().V1().NetworkPolicies()

	kick := kubeclient.NewWakeup()
	trigger := kick.Poke
	handler := func(changed func(old, cur interface{}) bool) cache.ResourceEventHandler {
		return cache.ResourceEventHandlerFuncs{
			AddFunc: func(interface{}) { trigger() },
			UpdateFunc: func(old, cur interface{}) {
				if changed(old, cur) {
					trigger()
				}
			},
			DeleteFunc: func(interface{}) { trigger() },
		}
	}
	always := func(_, _ interface{}) bool { return true }
	for _, reg := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{pods.Informer(), handler(podChanged)},
		{namespaces.Informer(), handler(namespaceChanged)},
		{policies.Informer(), handler(always)},
	} {
		if _, err := reg.inf.AddEventHandler(reg.h); err != nil {
			return err
		}
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced, namespaces.Informer().HasSynced, policies.Informer().HasSynced) {
		return nil
	}

	state := func() (State, error) {
		st := State{NodeName: c.NodeName}
		var err1, err2, err3 error
		st.Pods, err1 = pods.Lister().List(labels.Everything())
		st.Namespaces, err2 = namespaces.Lister().List(labels.Everything())
		st.Policies, err3 = policies.Lister().List(labels.Everything())
		return st, errors.Join(err1, err2, err3)
	}

	var applied string
	timer := time.NewTimer(0) // first sync now
	defer timer.Stop()
	armed, force := true, true
	periodic := time.NewTicker(resync)
	defer periodic.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
			// The first change of a burst arms the timer; later ones
			// join that sync, so a steady stream of changes still syncs
			// every coalesce interval.
			if !armed {
				timer.Reset(coalesce)
				armed = true
			}
			continue
		case <-periodic.C:
			force = true
			if !armed {
				timer.Reset(0)
				armed = true
			}
			continue
		case <-timer.C:
			armed = false
		}
		st, err := state()
		if err == nil {
			var script string
			if script, err = sync(ctx, nft, st, applied, force); err == nil {
				applied, force = script, false
				continue
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		klog.Errorf("network policy: sync failed (retrying in %s): %v", retry, err)
		timer.Reset(retry)
		armed = true
	}
}

// sync writes the table for st unless the script is the one applied last
// (force writes it anyway). It returns the script now in force.
func sync(ctx context.Context, nft knftables.Interface, st State, applied string, force bool) (script string, err error) {
	defer func() {
		// Odd input must not take the whole node down.
		if r := recover(); r != nil {
			err = fmt.Errorf("panic while building rules: %v", r)
		}
	}()
	start := time.Now()
	tx := nft.NewTransaction()
	stats := Build(tx, st)
	script = tx.String()
	if script == applied && !force {
		return script, nil
	}
	if err := nft.Run(ctx, tx); err != nil {
		return "", err
	}
	klog.V(2).Infof("network policy: synced in %s: %d policies, %d pods in the cluster, %d local pods selected for ingress and %d for egress, %d chains, %d rules, %d set and map elements",
		time.Since(start).Round(time.Microsecond), stats.Policies, stats.Pods, stats.IngressPods, stats.EgressPods, stats.Chains, stats.Rules, stats.SetsElements)
	return script, nil
}

// stripManagedFields keeps the informers' caches small: every pod of the
// cluster is held.
func stripManagedFields(obj interface{}) (interface{}, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		o.ManagedFields = nil
	case *corev1.Namespace:
		o.ManagedFields = nil
	case *networkingv1.NetworkPolicy:
		o.ManagedFields = nil
	}
	return obj, nil
}

// podChanged reports whether an update touches what the rules use.
func podChanged(old, cur interface{}) bool {
	a, ok1 := old.(*corev1.Pod)
	b, ok2 := cur.(*corev1.Pod)
	if !ok1 || !ok2 || a == nil || b == nil {
		return true
	}
	key := func(p *corev1.Pod) []interface{} {
		var ports [][]corev1.ContainerPort
		for _, c := range p.Spec.InitContainers {
			ports = append(ports, c.Ports)
		}
		for _, c := range p.Spec.Containers {
			ports = append(ports, c.Ports)
		}
		return []interface{}{p.Labels, p.Status.PodIP, p.Status.PodIPs, p.Status.Phase, p.Spec.NodeName,
			p.Spec.HostNetwork, p.DeletionTimestamp != nil, ports}
	}
	return !reflect.DeepEqual(key(a), key(b))
}

func namespaceChanged(old, cur interface{}) bool {
	a, ok1 := old.(*corev1.Namespace)
	b, ok2 := cur.(*corev1.Namespace)
	if !ok1 || !ok2 || a == nil || b == nil {
		return true
	}
	return !reflect.DeepEqual(a.Labels, b.Labels)
}

// waitNftables returns the table's nftables interface, waiting (and saying
// so every minute) while nft is missing or unusable: policies are then not
// enforced, which the log must not hide.
func waitNftables(ctx context.Context) knftables.Interface {
	var last time.Time
	for {
		nft, err := knftables.New(knftables.InetFamily, Table)
		if err == nil {
			return nft
		}
		if time.Since(last) >= time.Minute {
			klog.Errorf("network policy: NetworkPolicies are NOT enforced on this node: nftables unusable (install nft >= 1.0.1): %v", err)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry * 5):
		}
	}
}

// DeleteTable removes the table if it exists and says whether it did.
func DeleteTable(ctx context.Context) (bool, error) {
	if _, err := exec.LookPath("nft"); err != nil {
		return false, nil // no nft, no table it could have made
	}
	nft, err := knftables.New(knftables.InetFamily, Table)
	if err != nil {
		return false, err
	}
	return deleteTable(ctx, nft)
}

func deleteTable(ctx context.Context, nft knftables.Interface) (bool, error) {
	if _, err := nft.List(ctx, "chains"); knftables.IsNotFound(err) {
		return false, nil
	}
	tx := nft.NewTransaction()
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	if err := nft.Run(ctx, tx); err != nil {
		return false, fmt.Errorf("delete nftables table inet %s: %w", Table, err)
	}
	return true, nil
}

// Disabled is the component that runs instead of the Controller with
// --disable-network-policy: it removes the table an earlier run left, so
// no policy rule stays in force.
func Disabled() component.Component {
	return component.Func{N: "network policy", F: func(ctx context.Context, ready func()) error {
		removed, err := DeleteTable(ctx)
		switch {
		case err != nil:
			return err
		case removed:
			klog.Infof("network policy: disabled; removed nftables table inet %s", Table)
		default:
			klog.Info("network policy: disabled")
		}
		ready()
		<-ctx.Done()
		return nil
	}}
}
