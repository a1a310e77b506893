package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/klog/v2"

	"distro/pkg/checkconfig"
	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/etcd"
	"distro/pkg/fsutil"
	"distro/pkg/pki"
	"distro/pkg/token"
)

// clusterReset is `distro server --cluster-reset`: it makes this server's
// etcd member a one-member cluster (from its own data or a snapshot) and
// returns, telling the operator what to do next. On the data dir of a
// server of the cluster, the snapshot is checked against the cluster's ID
// (its CA hash) from the stored token. On a fresh data dir, --token must be
// the cluster's: the snapshot's sealed bootstrap data (CAs, service-account
// key) opens with its secret and is written as this server's.
func clusterReset(ctx context.Context, cfg *config.Server, ec etcd.Config, paths datadir.Server) error {
	var tok token.Token
	fresh := false
	data, err := os.ReadFile(paths.Token)
	switch {
	case err == nil:
		if tok, err = token.Parse(strings.TrimSpace(string(data))); err != nil {
			return fmt.Errorf("--cluster-reset: %s: %w", paths.Token, err)
		}
	case errors.Is(err, os.ErrNotExist) && cfg.ClusterResetRestorePath != "" && cfg.Token != "":
		fresh = true
		if tok, err = token.Parse(cfg.Token); err != nil {
			return fmt.Errorf("--token: %w", err)
		}
		if _, err := os.Stat(paths.TLS); err == nil {
			return fmt.Errorf("--cluster-reset: %s holds certificates but no token; restore on the server's own data dir or on a new one", paths.TLS)
		}
	default:
		return fmt.Errorf("--cluster-reset: %s is not the data dir of a distro server (%s: %v); to restore a snapshot on a new server, give --cluster-reset-restore-path and the cluster's --token", cfg.DataDir, paths.Token, checkconfig.Cause(err))
	}
	ec.ClusterID = tok.CAHash
	var shared map[string][]byte
	check := func(id string, sealed []byte) error {
		if !fresh {
			return nil
		}
		if len(sealed) == 0 {
			return errors.New("the snapshot holds no bootstrap data (CAs): restore it on the data dir of a server of its cluster")
		}
		files, err := etcd.OpenBootstrap(tok.Secret, sealed)
		if err != nil {
			return err
		}
		if id != "" && pki.CAHash(files["server-ca.crt"]) != id {
			return errors.New("the snapshot's bootstrap data does not match its cluster ID")
		}
		shared = files
		return nil
	}
	if fresh {
		defer func() {
			if shared == nil { // refused before anything was written
				os.RemoveAll(paths.Root)
			}
		}()
	}
	old, err := ec.Reset(ctx, cfg.ClusterResetRestorePath, check)
	if err != nil {
		return err
	}
	if fresh {
		if err := pki.WriteShared(paths.TLS, shared); err != nil {
			return fmt.Errorf("--cluster-reset: writing the cluster's certificates: %w", err)
		}
		caHash := pki.CAHash(shared["server-ca.crt"])
		t := token.Token{CAHash: caHash, User: "server", Secret: tok.Secret}
		if err := fsutil.WriteFileAtomic(paths.Token, []byte(t.String()+"\n"), 0o600); err != nil {
			return err
		}
		klog.Infof("cluster reset: this server now holds the cluster's CAs and service-account key from the snapshot (CA hash %s…)", caHash[:12])
	}
	from := "its own data"
	if cfg.ClusterResetRestorePath != "" {
		from = "snapshot " + cfg.ClusterResetRestorePath
	}
	klog.Infof("cluster reset done: etcd in %s is a one-member cluster from %s; the previous data is in %s", ec.DataDir, from, old)
	fmt.Fprintf(os.Stderr, "distro: cluster reset done (from %s; previous etcd data kept in %s).\n"+
		"Start `distro server` again without --cluster-reset.\n"+
		"Any other server of this cluster must not rejoin with its old data: stop it and move its %s folder away before it joins again.\n",
		from, old, "<data-dir>/server/db")
	return nil
}
