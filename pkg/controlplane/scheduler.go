package controlplane

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/component-base/configz"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/latest"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	schedv1 "k8s.io/kubernetes/pkg/scheduler/apis/config/v1"

	"distro/pkg/config"
	"distro/pkg/fsutil"
)

// Scheduler runs kube-scheduler.
type Scheduler struct {
	Args []string
	// ConfigFile is where Run writes the scheduler's configuration
	// (WriteConfig) when the flags give none.
	ConfigFile string
}

// PodMaxBackoffSeconds is the longest the scheduler waits before it tries
// again a pod it could not place, once a change in the cluster may let it
// (upstream: 10 s; its first wait, PodInitialBackoffSeconds, is 1 s and
// doubles at each failure). On a small cluster the pods that wait are
// those created before their node is ready: at a first start the add-ons'
// pods fail once with no node, once more with the node's not-ready taint,
// and upstream's doubling then held them 2 s after the node was Ready. The
// cost is at most one more attempt a second for a pod that cannot be
// placed, and only after a change its scheduling plugins say may help.
const PodMaxBackoffSeconds = 1

// NewScheduler builds the scheduler's flags. Upstream's leader election is
// off: its exit path would end the whole process when the Lease is lost (and
// on a normal stop); distro elects the scheduler itself (pkg/leader). The
// client rate limit is raised from upstream's 50/s (burst 100): every bind is
// a request, so 50/s caps scheduling at ~50 pods/s (make bench-scale).
func NewScheduler(kubeconfig, configFile string, file func(string) string, extra []config.Arg) *Scheduler {
	return &Scheduler{ConfigFile: configFile, Args: flagArgs(map[string]string{
		"kubeconfig":                kubeconfig,
		"authentication-kubeconfig": kubeconfig,
		"authorization-kubeconfig":  kubeconfig,
		"bind-address":              "127.0.0.1",
		"secure-port":               "10259",
		"leader-elect":              "false",
		"profiling":                 "false",
		"kube-api-qps":              "200",
		"kube-api-burst":            "400",
		"tls-cert-file":             file("serving-kube-scheduler.crt"),
		"tls-private-key-file":      file("serving-kube-scheduler.key"),
	}, extra)}
}

func (s *Scheduler) Name() string { return "kube-scheduler" }

// Options parses the flags into upstream options.
func (s *Scheduler) Options() (*schedoptions.Options, error) {
	opts := schedoptions.NewOptions()
	if err := parseInto("kube-scheduler", *opts.Flags, s.Args); err != nil {
		return nil, err
	}
	return opts, nil
}

// Run implements component.Component.
func (s *Scheduler) Run(ctx context.Context, ready func()) error {
	opts, err := s.Options()
	if err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	if opts.ConfigFile == "" {
		if err := s.WriteConfig(opts); err != nil {
			return err
		}
		opts.ConfigFile = s.ConfigFile
	}
	// Run again after a lost Lease: forget the previous run's /configz.
	configz.Delete("componentconfig")
	cc, sched, err := schedapp.Setup(ctx, opts)
	if err != nil {
		return err
	}
	ready()
	err = schedapp.Run(ctx, cc, sched)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// WriteConfig writes to ConfigFile the configuration the scheduler would
// build from its flags, upstream's defaults with what the flags set
// (--kubeconfig, --kube-api-qps, --leader-elect, ...: what upstream applies
// when it is given no file), with PodMaxBackoffSeconds: the backoffs are
// fields of the configuration file only. An operator's own file
// (--kube-scheduler-arg config=FILE) is used as it is instead.
func (s *Scheduler) WriteConfig(opts *schedoptions.Options) error {
	cfg, err := latest.Default()
	if err != nil {
		return err
	}
	opts.ComponentConfig = cfg
	opts.ApplyDeprecated()
	opts.ApplyLeaderElectionTo(cfg)
	cfg.PodMaxBackoffSeconds = PodMaxBackoffSeconds
	// The default profile is filled in when the file is read.
	cfg.Profiles = nil
	info, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), runtime.ContentTypeYAML)
	if !ok {
		return fmt.Errorf("kube-scheduler configuration: no YAML encoder")
	}
	data, err := runtime.Encode(scheme.Codecs.EncoderForVersion(info.Serializer, schedv1.SchemeGroupVersion), cfg)
	if err != nil {
		return fmt.Errorf("kube-scheduler configuration: %v", err)
	}
	return fsutil.WriteFileAtomic(s.ConfigFile, data, 0o600)
}
