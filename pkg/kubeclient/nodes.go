package kubeclient

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Nodes follows the cluster's Nodes through a watch (an informer) for a
// component that acts on the set of nodes: Changed wakes it after any node
// is added, changed or deleted, a burst of changes waking it once.
type Nodes struct {
	Changed  <-chan struct{}
	informer cache.SharedIndexInformer
	factory  informers.SharedInformerFactory
}

// WatchNodes starts following the nodes until ctx ends. transform, when
// not nil, is what the informer keeps of each node (less memory on a large
// cluster); nil keeps whole Nodes.
func WatchNodes(ctx context.Context, client kubernetes.Interface, transform cache.TransformFunc) *Nodes {
	var opts []informers.SharedInformerOption
	if transform != nil {
		opts = append(opts, informers.WithTransform(transform))
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, opts...)
	informer := factory.Core().V1().Nodes().Informer()
	changed := NewWakeup()
	poke := func(any) { changed.Poke() }
	informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, DeleteFunc: poke, UpdateFunc: func(_, n any) { poke(n) },
	})
	factory.Start(ctx.Done())
	return &Nodes{Changed: changed, informer: informer, factory: factory}
}

// Synced waits until the first list of nodes is in; false if ctx ended first.
func (n *Nodes) Synced(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), n.informer.HasSynced)
}

// List returns the nodes as the informer holds them now.
func (n *Nodes) List() []*corev1.Node {
	objs := n.informer.GetStore().List()
	nodes := make([]*corev1.Node, 0, len(objs))
	for _, obj := range objs {
		if node, ok := obj.(*corev1.Node); ok {
			nodes = append(nodes, node)
		}
	}
	return nodes
}

// Stop waits for the informer's goroutines to end: call it once the
// context given to WatchNodes has ended (it blocks until then).
func (n *Nodes) Stop() { n.factory.Shutdown() }
