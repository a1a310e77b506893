package server

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"distro/pkg/config"
)

// preflight checks what would otherwise fail half-way through a start,
// before anything is written: the ports are free and the data dir is
// writable.
func preflight(cfg *config.Server) error {
	ports := []struct {
		flag string
		host string
		port int
	}{
		{"--https-listen-port", cfg.BindAddress, cfg.HTTPSListenPort},
		{"--etcd-client-port", "127.0.0.1", cfg.EtcdClientPort},
		{"--etcd-peer-port", "127.0.0.1", cfg.EtcdPeerPort},
		{"kube-controller-manager port", "127.0.0.1", 10257},
		{"kube-scheduler port", "127.0.0.1", 10259},
	}
	seen := map[int]string{}
	for _, p := range ports {
		if other, dup := seen[p.port]; dup {
			return fmt.Errorf("%s %d is also used by %s", p.flag, p.port, other)
		}
		seen[p.port] = p.flag
		l, err := net.Listen("tcp", net.JoinHostPort(p.host, strconv.Itoa(p.port)))
		if err != nil {
			return fmt.Errorf("%s: port %d on %s is already in use or not available: %v", p.flag, p.port, p.host, unwrapOp(err))
		}
		l.Close()
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
		return fmt.Errorf("--data-dir %s is not writable: %v", dir, unwrapOp(err))
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
		return fmt.Errorf("--data-dir %s is not writable: %v", dir, unwrapOp(err))
	}
	return nil
}

func unwrapOp(err error) error {
	for {
		switch e := err.(type) {
		case *net.OpError:
			err = e.Err
		case *os.PathError:
			return e.Err
		case *os.SyscallError:
			return e.Err
		default:
			return err
		}
	}
}
