package controlplane

import (
	"context"

	"k8s.io/component-base/configz"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"distro/pkg/config"
)

// Scheduler runs kube-scheduler.
type Scheduler struct{ Args []string }

// NewScheduler builds the scheduler's flags. Upstream's leader election is
// off: its exit path would end the whole process when the Lease is lost (and
// on a normal stop); distro elects the scheduler itself (pkg/leader). The
// client rate limit is raised from upstream's 50/s (burst 100): every bind is
// a request, so 50/s caps scheduling at ~50 pods/s (make bench-scale).
func NewScheduler(kubeconfig string, file func(string) string, extra []config.Arg) *Scheduler {
	return &Scheduler{Args: flagArgs(map[string]string{
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
