package bench

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestSecretCreates creates 1,000 Secrets one after another and reports
// how long it took (scripts/bench.sh runs it on a server with and without
// --secrets-encryption and prints the ratio).
func TestSecretCreates(t *testing.T) {
	kc := os.Getenv("BENCH_KUBECONFIG")
	if kc == "" {
		t.Skip("run through scripts/bench.sh (BENCH_KUBECONFIG unset)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	client := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	secrets := client.CoreV1().Secrets("default")
	create := func(name string) {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string][]byte{"password": []byte("bench-" + name + "-0123456789abcdef")}}
		if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 50; i++ { // warm-up
		create(fmt.Sprintf("warm-%d", i))
	}
	const n = 1000
	start := time.Now()
	for i := 0; i < n; i++ {
		create(fmt.Sprintf("bench-%d", i))
	}
	d := time.Since(start)
	fmt.Printf("secret creates: %d in %.2f s (%.2f ms each)\n", n, d.Seconds(), float64(d.Microseconds())/1000/n)
}
