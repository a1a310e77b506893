// Package bench measures pod start latency on a running distro node. It is
// run by scripts/bench.sh (make bench), not by make test.
package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestPodStartup creates pods from an imported image one after another and
// reports create → Running latency (p50, max).
func TestPodStartup(t *testing.T) {
	kc, image := os.Getenv("BENCH_KUBECONFIG"), os.Getenv("BENCH_IMAGE")
	if kc == "" || image == "" {
		t.Skip("run through scripts/bench.sh (BENCH_KUBECONFIG and BENCH_IMAGE unset)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	client := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	ns := "default"
	// The namespace's default ServiceAccount must exist before pods can be created.
	for i := 0; i < 600; i++ {
		if _, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	n := 10
	var lat []time.Duration
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("bench-%d", i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{Name: "c", Image: image, ImagePullPolicy: corev1.PullNever,
					Command: []string{"/bin/sh", "-c", "exec sleep 3600"}}},
			},
		}
		w, err := client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		timeout := time.After(60 * time.Second)
	wait:
		for {
			select {
			case ev := <-w.ResultChan():
				if p, ok := ev.Object.(*corev1.Pod); ok && p.Status.Phase == corev1.PodRunning {
					lat = append(lat, time.Since(start))
					break wait
				}
			case <-timeout:
				t.Fatalf("pod %s not Running after 60 s", name)
			}
		}
		w.Stop()
		client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	}
	sorted := append([]time.Duration(nil), lat...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	fmt.Printf("pod create → Running (imported image, %d pods): p50 %.2f s, first %.2f s, max %.2f s (target p50 ≤ 0.5 s)\n",
		n, sorted[n/2].Seconds(), lat[0].Seconds(), sorted[n-1].Seconds())
}
