package server

import (
	"fmt"
	"os"
	"path/filepath"

	"distro/pkg/checkconfig"
	"distro/pkg/config"
)

// preflight checks what would otherwise fail half-way through a start,
// before anything is written: what `distro check-config` checks for this
// server (the ports, and the host's kernel, cgroups and tools when it runs
// a node), then that the data dir is writable.
func preflight(cfg *config.Server) error {
	if err := checkconfig.Preflight(checkconfig.ForServer(cfg)); err != nil {
		return err
	}
	return checkWritable(cfg.DataDir)
}

// checkWritable makes sure dir exists (creating it if needed) and accepts
// files. A folder it created for the check is removed again.
func checkWritable(dir string) error {
	created := ""
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		created = d
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--data-dir %s is not writable: %v", dir, checkconfig.Cause(err))
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err == nil {
		f.Close()
		err = os.Remove(f.Name())
	}
	if err != nil {
		if created != "" {
			os.RemoveAll(created)
		}
		return fmt.Errorf("--data-dir %s is not writable: %v", dir, checkconfig.Cause(err))
	}
	return nil
}
