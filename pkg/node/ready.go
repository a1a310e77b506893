package node

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"distro/pkg/component"
	"distro/pkg/kubeclient"
)

// ReadyLogger is a component that logs "node <name> Ready in N s" once the
// node turns Ready, and applies Labels first (the kubelet may not set
// node-role labels itself, so the server does it with its own client).
func ReadyLogger(client kubernetes.Interface, name string, start time.Time, labels map[string]string) component.Component {
	return component.Func{N: "node " + name, F: func(ctx context.Context, ready func()) error {
		ready()
		labeled, logged := len(labels) == 0, false
		_ = kubeclient.PollStart(ctx, func(ctx context.Context) (bool, error) {
			n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			if !labeled {
				for k, v := range labels {
					if n.Labels[k] != v {
						patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, k, v)
						if _, err := client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
							return false, nil
						}
					}
				}
				labeled = true
			}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !logged {
					klog.Infof("node %s Ready in %.2f s", name, time.Since(start).Seconds())
					logged = true
				}
			}
			return labeled && logged, nil
		})
		<-ctx.Done()
		return nil
	}}
}
