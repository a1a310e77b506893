package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestKubeSystemReady follows the kube-system pods through one watch until
// the packaged add-ons' pods exist and every one is Ready, and prints the
// seconds since BENCH_START (Unix seconds: when scripts/bench.sh started the
// server). One watching process instead of a poll: a poll that runs kubectl
// every tenth of a second takes half a core of a 2-core machine from the
// boot it measures.
func TestKubeSystemReady(t *testing.T) {
	kc, start := os.Getenv("BENCH_KUBECONFIG"), os.Getenv("BENCH_START")
	if kc == "" || start == "" {
		t.Skip("run through scripts/bench.sh (BENCH_KUBECONFIG and BENCH_START unset)")
	}
	t0, err := strconv.ParseFloat(start, 64)
	if err != nil {
		t.Fatalf("BENCH_START=%q: not Unix seconds", start)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ready := map[string]bool{}
	for ctx.Err() == nil {
		list, err := client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		clear(ready)
		for i := range list.Items {
			ready[list.Items[i].Name] = podReady(&list.Items[i])
		}
		w, err := client.CoreV1().Pods("kube-system").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			continue
		}
		for {
			if allReady(ready) {
				w.Stop()
				fmt.Printf("add-ons: cold start to every kube-system pod Ready: %.1f s\n", float64(time.Now().UnixNano())/1e9-t0)
				return
			}
			ev, ok := <-w.ResultChan()
			if !ok {
				break // the watch ended: list again
			}
			pod, isPod := ev.Object.(*corev1.Pod)
			switch {
			case !isPod:
			case ev.Type == watch.Deleted:
				delete(ready, pod.Name)
			default:
				ready[pod.Name] = podReady(pod)
			}
		}
	}
	t.Fatalf("kube-system pods not all Ready after 3 minutes: %v", ready)
}

// allReady: the three packaged add-ons' pods (at least) exist and every
// kube-system pod is Ready.
func allReady(ready map[string]bool) bool {
	if len(ready) < 3 {
		return false
	}
	for _, r := range ready {
		if !r {
			return false
		}
	}
	return true
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
