package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"k8s.io/component-base/configz"
	cmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	cmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"

	"distro/pkg/config"
)

// ControllerManager runs kube-controller-manager.
type ControllerManager struct{ Args []string }

// NewControllerManager builds the controller-manager's flags: node pod CIDRs
// from clusterCIDR, CSRs signed by the client CA (kubelet serving
// certificates by the server CA), a service-account credential per
// controller. Upstream's leader election is off, as for the scheduler. The client rate
// limit is raised from upstream's 20/s (burst 30), sized for large clusters:
// with a credential per controller, the ~120 requests that create the
// controllers' service accounts at first start otherwise hold every
// controller, node-ipam included, back for ~5 s.
func NewControllerManager(kubeconfig, clusterCIDR, serviceCIDR string, file func(string) string, extra []config.Arg) *ControllerManager {
	return &ControllerManager{Args: flagArgs(map[string]string{
		"kubeconfig":                       kubeconfig,
		"authentication-kubeconfig":        kubeconfig,
		"authorization-kubeconfig":         kubeconfig,
		"bind-address":                     "127.0.0.1",
		"secure-port":                      "10257",
		"leader-elect":                     "false",
		"profiling":                        "false",
		"allocate-node-cidrs":              "true",
		"cluster-cidr":                     clusterCIDR,
		"service-cluster-ip-range":         serviceCIDR,
		"configure-cloud-routes":           "false",
		"root-ca-file":                     file("server-ca.crt"),
		"service-account-private-key-file": file("service.key"),
		"use-service-account-credentials":  "true",
		"kube-api-qps":                     "100",
		"kube-api-burst":                   "200",
		"controllers":                      "*,tokencleaner",
		"tls-cert-file":                    file("serving-kube-controller-manager.crt"),
		"tls-private-key-file":             file("serving-kube-controller-manager.key"),
		"cluster-signing-kube-apiserver-client-cert-file": file("client-ca.crt"),
		"cluster-signing-kube-apiserver-client-key-file":  file("client-ca.key"),
		"cluster-signing-kubelet-client-cert-file":        file("client-ca.crt"),
		"cluster-signing-kubelet-client-key-file":         file("client-ca.key"),
		"cluster-signing-kubelet-serving-cert-file":       file("server-ca.crt"),
		"cluster-signing-kubelet-serving-key-file":        file("server-ca.key"),
		"cluster-signing-legacy-unknown-cert-file":        file("server-ca.crt"),
		"cluster-signing-legacy-unknown-key-file":         file("server-ca.key"),
	}, extra)}
}

func (c *ControllerManager) Name() string { return "kube-controller-manager" }

// Options parses the flags into upstream options.
func (c *ControllerManager) Options() (*cmoptions.KubeControllerManagerOptions, error) {
	s, err := cmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, err
	}
	fss := s.Flags(cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases())
	if err := parseInto("kube-controller-manager", fss, c.Args); err != nil {
		return nil, err
	}
	return s, nil
}

// Run implements component.Component.
func (c *ControllerManager) Run(ctx context.Context, ready func()) error {
	s, err := c.Options()
	if err != nil {
		return err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	// Run again after a lost Lease: forget the previous run's /configz.
	configz.Delete(cmapp.ConfigzName)
	cfg, err := s.Config(ctx, cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases())
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- cmapp.Run(ctx, cfg.Complete()) }()
	// Ready once the controllers are built: building them initialises the
	// volume plugins, and the CSI plugin keeps process-wide state that the
	// last Init wins — the kubelet's (started after this) must be last.
	port := s.SecureServing.BindPort
	select {
	case err = <-errc:
	case <-waitControllersBuilt(ctx, port):
		ready()
		err = <-errc
	}
	if ctx.Err() != nil {
		// Give controllers a moment to finish in-flight writes.
		time.Sleep(100 * time.Millisecond)
		return nil
	}
	return err
}

// waitControllersBuilt closes its channel once the controller-manager's
// /healthz lists its controllers' checks (added after all are built), or
// after 15 s. It asks every 20 ms: the node's components wait for it.
func waitControllersBuilt(ctx context.Context, port int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // loopback, its own serving cert
		url := fmt.Sprintf("https://127.0.0.1:%d/healthz?verbose", port)
		deadline := time.Now().Add(15 * time.Second)
		for ctx.Err() == nil && time.Now().Before(deadline) {
			if resp, err := c.Get(url); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if strings.Contains(string(body), "attach-detach") {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if ctx.Err() == nil {
			klog.Warningf("kube-controller-manager: its controllers are not listed on %s after 15 s; going on", url)
		}
	}()
	return done
}
