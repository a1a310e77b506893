// Package bench measures pod start latency on a running distro node. It is
// run by scripts/bench.sh (make bench), not by make test.
package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// benchClient is a client of the cluster scripts/bench.sh started, with the
// image the pods run; the test is skipped outside the script.
func benchClient(t *testing.T) (*kubernetes.Clientset, string) {
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
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := waitServiceAccount(ctx, client, "default"); err != nil {
		t.Fatal(err)
	}
	return client, image
}

// waitServiceAccount waits for the namespace's default ServiceAccount:
// until it exists, pod creates in the namespace are refused.
func waitServiceAccount(ctx context.Context, client kubernetes.Interface, ns string) error {
	for {
		if _, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no default ServiceAccount in namespace %s", ns)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sleeper is a pod spec running the bench image's sleep, never pulled.
func sleeper(image string) corev1.PodSpec {
	return corev1.PodSpec{
		TerminationGracePeriodSeconds: new(int64),
		Containers: []corev1.Container{{Name: "c", Image: image, ImagePullPolicy: corev1.PullNever,
			Command: []string{"/bin/sh", "-c", "exec sleep 3600"}}},
	}
}

// percentile is the nearest-rank percentile p (0-100) of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// TestPodStartup creates pods from an imported image one after another
// (BENCH_PODS, default 30) and reports create → Running latency.
func TestPodStartup(t *testing.T) {
	client, image := benchClient(t)
	ctx := context.Background()
	ns := "default"
	n := envInt(t, "BENCH_PODS", 30)
	var lat []time.Duration
	var starts []time.Time // each pod's create, to find the slowest in the server's log
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("bench-%d", i)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: sleeper(image)}
		w, err := client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		starts = append(starts, start)
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
	slowest := 0
	for i := range lat {
		if lat[i] > lat[slowest] {
			slowest = i
		}
	}
	fmt.Printf("pod create → Running (imported image, %d pods one after another): p50 %.2f s, p99 %.2f s, first %.2f s, slowest pod %d of %d at %s\n",
		n, percentile(sorted, 50).Seconds(), percentile(sorted, 99).Seconds(), lat[0].Seconds(), slowest+1, n, starts[slowest].Format("15:04:05.000"))
}

// TestDeploymentReady creates a Deployment of BENCH_REPLICAS (default 100)
// replicas and reports the seconds until all are Ready.
func TestDeploymentReady(t *testing.T) {
	client, image := benchClient(t)
	ctx := context.Background()
	n := int32(envInt(t, "BENCH_REPLICAS", 100))
	labels := map[string]string{"app": "bench-deploy"}
	spec := sleeper(image)
	spec.Containers[0].Resources.Requests = corev1.ResourceList{} // no requests: a one-node cluster holds them all
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-deploy"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
	start := time.Now()
	if _, err := client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer client.AppsV1().Deployments("default").Delete(ctx, d.Name, metav1.DeleteOptions{})
	deadline := time.Now().Add(3 * time.Minute)
	for {
		got, err := client.AppsV1().Deployments("default").Get(ctx, d.Name, metav1.GetOptions{})
		if err == nil && got.Status.ReadyReplicas == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment: %d of %d replicas Ready after 3 minutes", got.Status.ReadyReplicas, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("deployment of %d replicas → all Ready: %.1f s\n", n, time.Since(start).Seconds())
}
