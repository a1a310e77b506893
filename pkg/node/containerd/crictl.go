package containerd

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"go.yaml.in/yaml/v3"

	"distro/pkg/bundle"
	"distro/pkg/config"
	"distro/pkg/datadir"
)

// CrictlMain runs the upstream crictl (carried in the runtime bundle)
// against distro's containerd, with no crictl config file needed. The data
// dir holding the bundle is $DISTRO_DATA_DIR, else the config file's
// data-dir, else /var/lib/distro. CONTAINER_RUNTIME_ENDPOINT, or -r/-i given
// by the caller, still win.
func CrictlMain(args []string) int {
	dataDir := crictlDataDir()
	dir, err := bundle.Path(dataDir)
	if err == nil {
		if _, statErr := os.Stat(filepath.Join(dir.Bin(), "crictl")); statErr != nil {
			dir, err = bundle.Extract(dataDir) // a node of this binary never ran here
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "distro crictl:", err)
		return 1
	}
	bin := filepath.Join(dir.Bin(), "crictl")
	argv := []string{"crictl"}
	if os.Getenv("CRI_CONFIG_FILE") == "" {
		if _, err := os.Stat("/etc/crictl.yaml"); err != nil {
			// No crictl config: say so with an empty one rather than
			// have crictl warn about each place it looked.
			argv = append(argv, "--config", os.DevNull)
		}
	}
	if os.Getenv("CONTAINER_RUNTIME_ENDPOINT") == "" {
		sock := "unix://" + datadir.NewAgent("").Socket
		argv = append(argv, "--runtime-endpoint", sock, "--image-endpoint", sock)
	}
	argv = append(argv, args...)
	if err := syscall.Exec(bin, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "distro crictl: %s: %v\n", bin, err)
	}
	return 1
}

func crictlDataDir() string {
	if d := os.Getenv("DISTRO_DATA_DIR"); d != "" {
		return d
	}
	var file struct {
		DataDir string `yaml:"data-dir"`
	}
	if b, err := os.ReadFile(config.DefaultConfigFile); err == nil && yaml.Unmarshal(b, &file) == nil && file.DataDir != "" {
		return file.DataDir
	}
	return "/var/lib/distro"
}
