package controlplane

import (
	"path/filepath"
	"testing"

	"k8s.io/klog/v2"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/validation"

	"distro/pkg/config"
)

// The configuration file the scheduler runs with holds what its flags set
// (they are ignored once a file is given) and distro's backoff, and passes
// upstream's own loading and validation.
func TestSchedulerConfigKeepsTheFlags(t *testing.T) {
	dir := t.TempDir()
	s := NewScheduler("/x/scheduler.kubeconfig", filepath.Join(dir, "etc", "kube-scheduler.yaml"),
		func(n string) string { return filepath.Join(dir, n) }, []config.Arg{{Key: "kube-api-qps", Value: "321"}})
	opts, err := s.Options()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteConfig(opts); err != nil {
		t.Fatal(err)
	}
	cfg, err := schedoptions.LoadConfigFromFile(klog.Background(), s.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := validation.ValidateKubeSchedulerConfiguration(cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.PodMaxBackoffSeconds != PodMaxBackoffSeconds || cfg.PodInitialBackoffSeconds != 1 {
		t.Errorf("backoffs %d..%d s; want 1..%d", cfg.PodInitialBackoffSeconds, cfg.PodMaxBackoffSeconds, PodMaxBackoffSeconds)
	}
	c := cfg.ClientConnection
	if c.Kubeconfig != "/x/scheduler.kubeconfig" || c.QPS != 321 || c.Burst != 400 || cfg.EnableProfiling {
		t.Errorf("kubeconfig %q, qps %v, burst %d, profiling %v: want the flags' /x/scheduler.kubeconfig, 321, 400, false",
			c.Kubeconfig, c.QPS, c.Burst, cfg.EnableProfiling)
	}
	if cfg.LeaderElection.LeaderElect {
		t.Error("leader election on in the file; the flags turn it off")
	}
	if len(cfg.Profiles) != 1 || cfg.Profiles[0].SchedulerName != "default-scheduler" {
		t.Errorf("profiles %v; want upstream's default one", cfg.Profiles)
	}
}
