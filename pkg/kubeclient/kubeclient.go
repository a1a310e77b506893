// Package kubeclient makes API clients from the kubeconfigs distro writes.
package kubeclient

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// FromKubeconfig returns a clientset for the kubeconfig at path.
func FromKubeconfig(path string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return kubernetes.NewForConfig(cfg)
}

// PollStart calls cond until it returns true or an error, or ctx ends: every
// 20 ms for the first 10 s, then every second. It is for the waits on a
// node's start (its Node registered, given a pod CIDR, Ready), which follow
// one another on the way to node Ready: each waited half its poll period on
// average for nothing (100 or 200 ms). A node that takes longer (an agent
// whose server is slow to answer) asks once a second.
func PollStart(ctx context.Context, cond func(context.Context) (bool, error)) error {
	fast := time.Now().Add(10 * time.Second)
	for {
		if ok, err := cond(ctx); err != nil || ok {
			return err
		}
		period := time.Second
		if time.Now().Before(fast) {
			period = 20 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(period):
		}
	}
}
