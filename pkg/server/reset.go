package server

import (
	"context"
	"fmt"
	"os"
	"strings"

	"k8s.io/klog/v2"

	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/etcd"
	"distro/pkg/token"
)

// clusterReset is `distro server --cluster-reset`: it makes this server's
// etcd member a one-member cluster (from its own data or a snapshot) and
// returns, telling the operator what to do next. It works on the data dir
// of a server of the cluster: the snapshot is checked against the cluster's
// ID (its CA hash) from the stored token.
func clusterReset(ctx context.Context, cfg *config.Server, ec etcd.Config, paths datadir.Server) error {
	data, err := os.ReadFile(paths.Token)
	if err != nil {
		return fmt.Errorf("--cluster-reset: %s is not the data dir of a distro server (%s: %v)", cfg.DataDir, paths.Token, unwrapOp(err))
	}
	tok, err := token.Parse(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("--cluster-reset: %s: %w", paths.Token, err)
	}
	ec.ClusterID = tok.CAHash
	old, err := ec.Reset(ctx, cfg.ClusterResetRestorePath)
	if err != nil {
		return err
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
