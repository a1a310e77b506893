// Package controlplane runs kube-apiserver, kube-scheduler and
// kube-controller-manager in the distro process, each built from its
// upstream cmd/<component>/app package and driven with distro's context.
package controlplane

import (
	"fmt"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"

	"distro/pkg/config"
)

// flagArgs merges distro's defaults with the user's pass-through args (the
// user wins) and renders them as sorted --key=value flags.
func flagArgs(defaults map[string]string, extra []config.Arg) []string {
	m := make(map[string]string, len(defaults)+len(extra))
	for k, v := range defaults {
		m[k] = v
	}
	for _, a := range extra {
		m[a.Key] = a.Value
	}
	return config.FlagList(m)
}

// parseInto parses args into the union of a component's named flag sets.
// component names the component in errors, e.g. "kube-apiserver".
func parseInto(component string, fss cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet(component, pflag.ContinueOnError)
	fs.SetOutput(nopWriter{})
	for _, f := range fss.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s flags: %w", component, err)
	}
	return nil
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
