package server

import (
	"slices"

	"k8s.io/client-go/kubernetes"

	"distro/pkg/addons"
	"distro/pkg/component"
	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/etcd"
	"distro/pkg/etcd/snapshot"
	"distro/pkg/secretsencrypt"
)

// distroControllers are distro's own controllers, run as one group by the
// server holding the distro-controllers Lease (by a single server,
// unelected): the add-on deployer, the
// NodeHosts updater (with CoreDNS), the scheduled etcd snapshots and, in a
// cluster of servers, the removal of a deleted server's etcd member, and the
// rewrite of Secrets not stored with the active encryption key.
func distroControllers(cfg *config.Server, paths datadir.Server, ec etcd.Config, ha bool, deployer *addons.Deployer, client kubernetes.Interface) (component.Component, error) {
	etcdClient, err := ec.ClientConfig()
	if err != nil {
		return nil, err
	}
	comps := []component.Component{deployer,
		&secretsencrypt.Migrator{ConfigPath: paths.EncryptionConfig, Etcd: etcdClient, Client: client}}
	if ha {
		comps = append(comps, &etcd.MemberRemover{Client: client, Etcd: ec})
	}
	if !slices.Contains(cfg.Disable, "coredns") {
		comps = append(comps, &addons.NodeHosts{Client: client})
	}
	if !cfg.EtcdDisableSnapshots {
		comps = append(comps, &snapshot.Schedule{
			Store: snapshot.Store{Dir: cfg.EtcdSnapshotDir}, Cron: cfg.EtcdSnapshotScheduleCron, Retention: cfg.EtcdSnapshotRetention,
			Node: cfg.NodeName, Etcd: etcdClient, Client: client,
		})
	}
	return component.Group("distro controllers", comps...), nil
}
