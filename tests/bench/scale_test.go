package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// The fake nodes: kwok (started by scripts/bench-scale.sh with
// --manage-nodes-with-annotation-selector) manages the Nodes carrying
// kwokAnnotation; their taint and label keep everything but the scale
// pods off them.
const (
	kwokAnnotation = "kwok.x-k8s.io/node"
	kwokLabel      = "type"
	scaleNamespace = "scale"
)

// TestScale is the scale benchmark of scripts/bench-scale.sh (make
// bench-scale): on a control-plane-only server with the kwok controller
// running, it creates SCALE_NODES fake Nodes, waits until they are Ready,
// then creates SCALE_PODS pods through SCALE_DEPLOYMENTS Deployments and
// waits until every pod is scheduled and Running (kwok sets bound pods
// Running). It prints lines starting with "scale: ": the time to all pods
// scheduled and Running, the scheduler's throughput and time per pod (its
// own metrics), the apiserver's request latency (GET, LIST, POST, PUT,
// PATCH) from its apiserver_request_duration_seconds histogram over the
// run and the watches it closed on slow clients, the RSS and CPU of the
// server process (SCALE_SERVER_PID; beside it the CPU of kwok
// (SCALE_KWOK_PID), of this test and of everything else on the host) and
// the etcd db size (the db file under SCALE_DATA_DIR). After
// SCALE_TIMEOUT_SECONDS (default 900) it prints what was reached and fails.
func TestScale(t *testing.T) {
	kc := os.Getenv("BENCH_KUBECONFIG")
	if kc == "" || os.Getenv("SCALE_NODES") == "" {
		t.Skip("run through scripts/bench-scale.sh (BENCH_KUBECONFIG or SCALE_NODES unset)")
	}
	nodes, pods := envInt(t, "SCALE_NODES", 1000), envInt(t, "SCALE_PODS", 30000)
	deployments := envInt(t, "SCALE_DEPLOYMENTS", 100)
	timeout := time.Duration(envInt(t, "SCALE_TIMEOUT_SECONDS", 900)) * time.Second
	serverPID, kwokPID := envInt(t, "SCALE_SERVER_PID", 0), envInt(t, "SCALE_KWOK_PID", 0)
	if deployments > pods {
		deployments = pods
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	client := kubernetes.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	// The namespace, and its default ServiceAccount: without it the
	// ReplicaSet controller's pod creates are refused and retried.
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scaleNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := waitServiceAccount(ctx, client, scaleNamespace); err != nil {
		t.Fatal(err)
	}

	before, err := scrapeMetrics(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	cpu0, kwokCPU0 := procCPUSeconds(serverPID), procCPUSeconds(kwokPID)
	self0, host0 := procCPUSeconds(os.Getpid()), hostCPUSeconds()
	runStart := time.Now()

	// Watches on the fake nodes and the scale pods: when each node turned
	// Ready, and each pod was first seen bound and Running.
	tr := newTracker()
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = kwokLabel + "=kwok" }))
	nodeInformer := factory.Core().V1().Nodes().Informer()
	nodeInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { tr.node(o.(*corev1.Node)) },
		UpdateFunc: func(_, o any) { tr.node(o.(*corev1.Node)) },
	})
	podFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(scaleNamespace))
	podInformer := podFactory.Core().V1().Pods().Informer()
	podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { tr.pod(o.(*corev1.Pod)) },
		UpdateFunc: func(_, o any) { tr.pod(o.(*corev1.Pod)) },
	})
	factory.Start(ctx.Done())
	podFactory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	podFactory.WaitForCacheSync(ctx.Done())

	// The fake nodes, created 32 at a time.
	if err := parallel(ctx, nodes, 32, func(i int) error {
		_, err := client.CoreV1().Nodes().Create(ctx, fakeNode(i), metav1.CreateOptions{})
		return err
	}); err != nil {
		t.Fatalf("creating nodes: %v", err)
	}
	created := time.Since(runStart)
	if !waitFor(ctx, func() bool { return tr.readyNodes() >= nodes }) {
		t.Fatalf("only %d of %d fake nodes Ready after %s: is kwok running?", tr.readyNodes(), nodes, time.Since(runStart).Round(time.Second))
	}
	ready := time.Since(runStart)
	// Every node's Lease, as a kubelet keeps it: kwok plays a node's pods
	// only once it holds the node's Lease (before, they wait for kwok's
	// list of the node's pods), which would count against the scheduler.
	leased := 0
	for leased < nodes {
		leases, err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			t.Fatal(err)
		}
		leased = 0
		for _, l := range leases.Items {
			if strings.HasPrefix(l.Name, "kwok-node-") {
				leased++
			}
		}
		if leased < nodes {
			select {
			case <-ctx.Done():
				t.Fatalf("only %d of %d fake nodes with a Lease after %s", leased, nodes, time.Since(runStart).Round(time.Second))
			case <-time.After(time.Second):
			}
		}
	}
	fmt.Printf("scale: %d fake nodes created in %.1f s, all Ready %.1f s and with a Lease %.1f s after the first create\n",
		nodes, created.Seconds(), ready.Seconds(), time.Since(runStart).Seconds())

	// The Deployments: pods/deployments replicas each (the first ones one
	// more for the remainder).
	podStart := time.Now()
	for d := 0; d < deployments; d++ {
		replicas := int32(pods / deployments)
		if d < pods%deployments {
			replicas++
		}
		if _, err := client.AppsV1().Deployments(scaleNamespace).Create(ctx, scaleDeployment(d, replicas), metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating deployment %d: %v", d, err)
		}
	}
	done := waitFor(ctx, func() bool { return tr.runningPods() >= pods })
	end := time.Now()

	// The figures, also after a timeout (what was reached by then).
	after, err := scrapeMetrics(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	cpu1, kwokCPU1 := procCPUSeconds(serverPID), procCPUSeconds(kwokPID)
	self1, host1 := procCPUSeconds(os.Getpid()), hostCPUSeconds()
	run := end.Sub(runStart)
	binds := tr.bindTimes()
	scheduled, running := len(binds), tr.runningPods()
	lastBind, lastRunning := tr.last()
	if done {
		target := float64(pods) / 100
		fmt.Printf("scale: %d pods (%d Deployments) on %d nodes: all scheduled %.1f s, all Running %.1f s after the first Deployment create  (target ≤ %.0f s: 100 pods/s)\n",
			pods, deployments, nodes, lastBind.Sub(podStart).Seconds(), lastRunning.Sub(podStart).Seconds(), target)
	} else {
		fmt.Printf("scale: TIMEOUT after %.0f s: %d of %d pods scheduled, %d Running\n", time.Since(podStart).Seconds(), scheduled, pods, running)
	}
	if scheduled > 0 {
		first := binds[0]
		span := binds[len(binds)-1].Sub(first).Seconds()
		fmt.Printf("scale: scheduler throughput: %.0f pods/s average (%d pods from first to last bind in %.1f s), peak %.0f pods/s over 10 s  (target ≥ 100 pods/s)\n",
			float64(scheduled)/math.Max(span, 1), scheduled, span, peakRate(binds, 10*time.Second))
	}
	// The scheduler runs in the server process: its metrics are on the
	// apiserver's /metrics. Its scheduling cycle takes one pod at a time,
	// so 1 / (time per pod) bounds its throughput.
	if n := after.schedAlgorithm[1] - before.schedAlgorithm[1]; n > 0 {
		avg := func(point string) float64 { // seconds per successful run
			a, b := after.schedExtension[point], before.schedExtension[point]
			if a[1] > b[1] {
				return (a[0] - b[0]) / (a[1] - b[1])
			}
			return 0
		}
		algo := (after.schedAlgorithm[0] - before.schedAlgorithm[0]) / n
		fmt.Printf("scale: scheduler per pod: algorithm %s (Filter %s, PreScore %s, Score %s; at most %.0f pods/s one at a time), bind call %s  (no target: where scheduling time goes)\n",
			fmtSeconds(algo), fmtSeconds(avg("Filter")), fmtSeconds(avg("PreScore")),
			fmtSeconds(avg("Score")), 1/algo, fmtSeconds(avg("Bind")))
	}
	for _, verb := range []string{"GET", "LIST", "POST", "PUT", "PATCH"} {
		h := after.requestDurations[verb].sub(before.requestDurations[verb])
		if h.count() == 0 {
			continue
		}
		fmt.Printf("scale: apiserver %-5s latency: p50 %s, p99 %s (%d requests)  (target p99 ≤ 1 s)\n",
			verb, fmtSeconds(h.quantile(0.50)), fmtSeconds(h.quantile(0.99)), int64(h.count()))
	}
	var closed []string
	for res, n := range after.terminatedWatchers {
		if d := n - before.terminatedWatchers[res]; d > 0 {
			closed = append(closed, fmt.Sprintf("%s %.0f", res, d))
		}
	}
	if len(closed) > 0 {
		sort.Strings(closed)
		fmt.Printf("scale: apiserver closed watches of too slow clients: %s\n", strings.Join(closed, ", "))
	}
	if serverPID != 0 {
		peak, now := procMemMB(serverPID)
		fmt.Printf("scale: server RSS: peak %d MB, at the end %d MB  (target ≤ 4096 MB)\n", peak, now)
		cpu := cpu1 - cpu0
		fmt.Printf("scale: server CPU: %.0f s over the %.0f s run (%.2f of %d cores)",
			cpu, run.Seconds(), cpu/run.Seconds(), runtime.NumCPU())
		if kwokPID != 0 {
			fmt.Printf("; kwok %.0f s", kwokCPU1-kwokCPU0)
		}
		// What else ran on the host meanwhile: the figures above depend on it.
		other := (host1 - host0) - cpu - (kwokCPU1 - kwokCPU0) - (self1 - self0)
		fmt.Printf("; this load generator %.0f s; other processes on the host %.0f s", self1-self0, max(other, 0))
		fmt.Printf("  (no target: for comparison across versions)\n")
	}
	if size, where := etcdDBSize(os.Getenv("SCALE_DATA_DIR"), after); size > 0 {
		fmt.Printf("scale: etcd db size: %.0f MB (%s)  (no target: for comparison across versions)\n", float64(size)/1e6, where)
	}
	if !done {
		t.Fatalf("not every pod Running in %s", timeout)
	}
}

// fakeNode is fake node i: annotated for kwok, labelled and tainted so that
// only the scale pods go there.
func fakeNode(i int) *corev1.Node {
	name := fmt.Sprintf("kwok-node-%d", i)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{kwokAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels: map[string]string{
				kwokLabel: "kwok", "kubernetes.io/hostname": name,
				"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
			},
		},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: kwokAnnotation, Value: "fake", Effect: corev1.TaintEffectNoSchedule}}},
	}
}

// scaleDeployment is Deployment d: pods that select and tolerate the fake
// nodes, with small requests (the scheduler fits and scores them like real
// pods). The image is never pulled: kwok runs no containers.
func scaleDeployment(d int, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": fmt.Sprintf("scale-%d", d)}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("scale-%d", d)},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{kwokLabel: "kwok"},
					Tolerations:  []corev1.Toleration{{Key: kwokAnnotation, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
					Containers: []corev1.Container{{
						Name: "app", Image: "registry.k8s.io/pause:3.10.2",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU:    resource.MustParse("10m"),
							corev1.ResourceMemory: resource.MustParse("16Mi"),
						}},
					}},
				},
			},
		},
	}
}

// tracker records when each fake node was first seen Ready and each scale
// pod first seen bound and Running.
type tracker struct {
	mu      sync.Mutex
	ready   map[string]bool
	bound   map[string]time.Time
	running map[string]time.Time
}

func newTracker() *tracker {
	return &tracker{ready: map[string]bool{}, bound: map[string]time.Time{}, running: map[string]time.Time{}}
}

func (tr *tracker) node(n *corev1.Node) {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			tr.mu.Lock()
			tr.ready[n.Name] = true
			tr.mu.Unlock()
		}
	}
}

func (tr *tracker) pod(p *corev1.Pod) {
	now := time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if _, ok := tr.bound[p.Name]; !ok && p.Spec.NodeName != "" {
		tr.bound[p.Name] = now
	}
	if _, ok := tr.running[p.Name]; !ok && p.Status.Phase == corev1.PodRunning {
		tr.running[p.Name] = now
		if _, ok := tr.bound[p.Name]; !ok { // bound and Running in one event
			tr.bound[p.Name] = now
		}
	}
}

func (tr *tracker) readyNodes() int  { tr.mu.Lock(); defer tr.mu.Unlock(); return len(tr.ready) }
func (tr *tracker) runningPods() int { tr.mu.Lock(); defer tr.mu.Unlock(); return len(tr.running) }

// bindTimes are the times pods were first seen bound, sorted.
func (tr *tracker) bindTimes() []time.Time {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	ts := make([]time.Time, 0, len(tr.bound))
	for _, t := range tr.bound {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	return ts
}

// last is the last bind and the last pod turning Running.
func (tr *tracker) last() (bound, running time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, t := range tr.bound {
		if t.After(bound) {
			bound = t
		}
	}
	for _, t := range tr.running {
		if t.After(running) {
			running = t
		}
	}
	return bound, running
}

// peakRate is the highest number of events per second in any window of the
// given width (sorted times).
func peakRate(ts []time.Time, window time.Duration) float64 {
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) > window {
			j++
		}
		best = max(best, i-j+1)
	}
	if len(ts) > 0 && ts[len(ts)-1].Sub(ts[0]) < window {
		return float64(len(ts)) / math.Max(ts[len(ts)-1].Sub(ts[0]).Seconds(), 1)
	}
	return float64(best) / window.Seconds()
}

// parallel runs f(0..n-1) on workers goroutines; the first error wins.
func parallel(ctx context.Context, n, workers int, f func(int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil || first.Load() != nil {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return ctx.Err()
}

// waitFor polls cond every 100 ms until it holds (true) or ctx ends.
func waitFor(ctx context.Context, cond func() bool) bool {
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return true
}

// envInt is the count in environment variable name, def when unset.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: not a count", name, v)
	}
	return n
}

// metricsSnapshot holds what the benchmark reads from the apiserver's
// /metrics: apiserver_request_duration_seconds summed over every label but
// the verb, apiserver_storage_size_bytes (the etcd db file size) and
// apiserver_terminated_watchers_total (watches closed because their client
// read too slowly) by resource; and the scheduler's
// scheduler_scheduling_algorithm_duration_seconds and
// scheduler_framework_extension_point_duration_seconds (successful runs, by
// extension point) as {sum, count}.
type metricsSnapshot struct {
	requestDurations   map[string]histogram
	storageBytes       float64
	terminatedWatchers map[string]float64
	schedAlgorithm     [2]float64
	schedExtension     map[string][2]float64
}

// histogram is a Prometheus histogram: cumulative counts by upper bound.
type histogram map[float64]float64

func (h histogram) count() float64 { return h[math.Inf(1)] }

// sub is h minus an earlier snapshot of the same histogram.
func (h histogram) sub(earlier histogram) histogram {
	d := histogram{}
	for le, n := range h {
		d[le] = n - earlier[le]
	}
	return d
}

// quantile estimates the q-quantile as Prometheus' histogram_quantile does:
// linear interpolation inside the bucket that holds it; the highest finite
// bound when it falls in the +Inf bucket.
func (h histogram) quantile(q float64) float64 {
	bounds := make([]float64, 0, len(h))
	for le := range h {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	rank := q * h.count()
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		if h[le] >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			if h[le] == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(h[le]-below)
		}
		lower, below = le, h[le]
	}
	return lower
}

// scrapeMetrics reads the apiserver's /metrics.
func scrapeMetrics(ctx context.Context, client kubernetes.Interface) (metricsSnapshot, error) {
	s := metricsSnapshot{requestDurations: map[string]histogram{}, terminatedWatchers: map[string]float64{}, schedExtension: map[string][2]float64{}}
	raw, err := client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return s, fmt.Errorf("apiserver /metrics: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, labels, value, ok := parseSample(sc.Text())
		if !ok {
			continue
		}
		switch name {
		case "apiserver_request_duration_seconds_bucket":
			le, err := strconv.ParseFloat(labels["le"], 64)
			if err != nil {
				continue
			}
			h := s.requestDurations[labels["verb"]]
			if h == nil {
				h = histogram{}
				s.requestDurations[labels["verb"]] = h
			}
			h[le] += value
		case "apiserver_storage_size_bytes":
			s.storageBytes += value
		case "apiserver_terminated_watchers_total":
			s.terminatedWatchers[labels["resource"]] += value
		case "scheduler_scheduling_algorithm_duration_seconds_sum":
			s.schedAlgorithm[0] += value
		case "scheduler_scheduling_algorithm_duration_seconds_count":
			s.schedAlgorithm[1] += value
		case "scheduler_framework_extension_point_duration_seconds_sum", "scheduler_framework_extension_point_duration_seconds_count":
			if labels["status"] == "Success" {
				i := 0 // _sum
				if strings.HasSuffix(name, "_count") {
					i = 1
				}
				e := s.schedExtension[labels["extension_point"]]
				e[i] += value
				s.schedExtension[labels["extension_point"]] = e
			}
		}
	}
	return s, sc.Err()
}

// parseSample splits one line of the Prometheus text format,
// name{label="value",...} value, into its parts.
func parseSample(line string) (name string, labels map[string]string, value float64, ok bool) {
	if line == "" || line[0] == '#' {
		return "", nil, 0, false
	}
	rest := line
	labels = map[string]string{}
	if i := strings.IndexByte(line, '{'); i >= 0 {
		name, rest = line[:i], line[i+1:]
		for len(rest) > 0 && rest[0] != '}' {
			eq := strings.IndexByte(rest, '=')
			if eq < 0 || eq+1 >= len(rest) || rest[eq+1] != '"' {
				return "", nil, 0, false
			}
			key := rest[:eq]
			var val strings.Builder
			j := eq + 2
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' && j+1 < len(rest) {
					j++
				}
				val.WriteByte(rest[j])
			}
			labels[key] = val.String()
			rest = strings.TrimPrefix(rest[min(j+1, len(rest)):], ",")
		}
		rest = strings.TrimPrefix(rest, "}")
	} else if i := strings.IndexByte(line, ' '); i >= 0 {
		name, rest = line[:i], line[i:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	return name, labels, v, err == nil
}

func fmtSeconds(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.2f s", s)
}

// procCPUSeconds is the user + system CPU time of a process from
// /proc/PID/stat (clock ticks of 1/100 s, Linux's USER_HZ); 0 when pid is 0
// or gone.
func procCPUSeconds(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14 and stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// hostCPUSeconds is the CPU time the host spent busy (not idle or waiting
// for I/O) since boot, over all cores, from /proc/stat.
func hostCPUSeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var busy float64
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is in user
			busy += v
		}
	}
	return busy / 100
}

// procMemMB is a process's peak RSS (VmHWM) and current RSS (VmRSS), MB.
func procMemMB(pid int) (peak, now int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmHWM:":
			peak = kb / 1024
		case "VmRSS:":
			now = kb / 1024
		}
	}
	return peak, now
}

// etcdDBSize is the size of the embedded etcd's db file under the server's
// data dir (<data-dir>/server/db/etcd/member/snap/db), else the apiserver's
// apiserver_storage_size_bytes.
func etcdDBSize(dataDir string, m metricsSnapshot) (int64, string) {
	if dataDir != "" {
		if fi, err := os.Stat(filepath.Join(dataDir, "server", "db", "etcd", "member", "snap", "db")); err == nil {
			return fi.Size(), "db file"
		}
	}
	return int64(m.storageBytes), "apiserver_storage_size_bytes"
}
